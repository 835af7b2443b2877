"""Answering a gate from elsewhere: the question and the answer are turns of the session
(`--wait-for-answers`, `orchestra answer`, `orchestra status`), on every store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from orchestra.answers import NoPendingQuestion, StoreInterviewer, answer_question, pending_question
from orchestra.engine.session import load_session
from orchestra.events import Event, InterviewStarted
from orchestra.pipeline import Pipeline
from orchestra.store.base import Store

ORCHESTRA = Path(sys.executable).with_name("orchestra")

GATE = """
digraph g {
    start [shape=Mdiamond]; exit [shape=Msquare]
    work  [shape=parallelogram, tool_command="echo work"]
    ask   [shape=hexagon, label="Merge?"]
    merge [shape=parallelogram, tool_command="echo merged"]
    start -> work -> ask
    ask -> merge [label="[M] Merge"]
    ask -> exit  [label="[C] Cancel"]
    merge -> exit
}
"""


async def run_answered(
    store: Store, source: str, answer: Any, tmp_path: Path
) -> tuple[Any, list[Any]]:
    """Run ``source`` waiting on the store for answers; ``answer(session)`` is called once
    the question is out. Returns the result and what was pending before the answer."""
    pipeline = Pipeline.load(
        source, store=store, interviewer=StoreInterviewer(store, interval=0.01), logs_root=tmp_path
    )
    asked = anyio.Event()
    seen: list[Any] = []

    def on_event(event: Event) -> None:
        if isinstance(event, InterviewStarted):
            asked.set()

    async def answer_when_asked() -> None:
        await asked.wait()
        assert pipeline.session_id is not None
        seen.append(pending_question(await load_session(store, pipeline.session_id)))
        await answer(pipeline.session_id)

    result: list[Any] = []

    async def run() -> None:
        result.append(await pipeline.run(on_event=on_event))

    async with anyio.create_task_group() as group:
        group.start_soon(run)
        group.start_soon(answer_when_asked)
    return result[0], seen


class TestAnswersThroughTheStore:
    async def test_a_choice_from_elsewhere_routes_the_gate(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """The run waits at the gate; the pending question names the node and its choices;
        the answer appended to the store takes the run on that edge."""

        async def answer(session: str) -> None:
            await answer_question(any_store, session, choice="M")

        result, seen = await run_answered(any_store, GATE, answer, tmp_path)
        assert result.completed_nodes == ("start", "work", "ask", "merge", "exit")
        (pending,) = seen
        assert (pending.node_id, pending.text) == ("ask", "Merge?")
        assert [o.key for o in pending.options] == ["M", "C"]
        state = await load_session(any_store, result.session_id)
        assert pending_question(state) is None

    async def test_a_typed_answer(self, any_store: Store, tmp_path: Path) -> None:
        """A gate asking only for text takes --text."""
        source = """
        digraph d { start [shape=Mdiamond]; exit [shape=Msquare]
          say [shape=hexagon, label="Anything to add?", human.input="text"]
          start -> say -> exit }
        """

        async def answer(session: str) -> None:
            await answer_question(any_store, session, text="ship it")

        result, _ = await run_answered(any_store, source, answer, tmp_path)
        assert result.context["human.gate.text"] == "ship it"

    async def test_a_wrong_choice_is_refused_with_the_choices(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """An answer the question does not take is refused, listing the choices; nothing is
        recorded, and a right answer still goes through."""
        refused: list[str] = []

        async def answer(session: str) -> None:
            with pytest.raises(NoPendingQuestion) as caught:
                await answer_question(any_store, session, choice="X")
            refused.append(str(caught.value))
            await answer_question(any_store, session, choice="Cancel")

        result, _ = await run_answered(any_store, GATE, answer, tmp_path)
        assert refused == [
            "node 'ask' asks 'Merge?': answer with --choice and one of [M] Merge, [C] Cancel"
        ]
        assert result.completed_nodes == ("start", "work", "ask", "exit")

    async def test_a_gate_wanting_text_takes_a_choice_and_text(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """A gate with choices and human.input="text" needs both: a choice alone is refused
        and the pair goes through, the text landing in human.gate.text."""
        source = GATE.replace('label="Merge?"', 'label="Merge?", human.input="text"')
        refused: list[str] = []

        async def answer(session: str) -> None:
            with pytest.raises(NoPendingQuestion) as caught:
                await answer_question(any_store, session, choice="M")
            refused.append(str(caught.value))
            await answer_question(any_store, session, choice="M", text="looks good")

        result, _ = await run_answered(any_store, source, answer, tmp_path)
        assert refused == [
            "node 'ask' asks 'Merge?' for a choice and text: answer with --choice and --text"
        ]
        assert result.context["human.gate.text"] == "looks good"
        assert result.completed_nodes[-2:] == ("merge", "exit")

    async def test_no_question_waiting(self, any_store: Store, tmp_path: Path) -> None:
        """A session that waits on nothing says so."""
        result = await Pipeline.load(GATE, store=any_store, logs_root=tmp_path).run()
        with pytest.raises(NoPendingQuestion, match="is not waiting on a question"):
            await answer_question(any_store, result.session_id, choice="M")


@pytest.mark.parametrize("kind", ["embedded", "cxdb"])
def test_orchestra_answer_from_another_process(
    tmp_path: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    """`orchestra run --wait-for-answers` in one process, `orchestra status` showing the
    question and `orchestra answer` in others: the run takes the answered edge."""
    env = {k: v for k, v in os.environ.items() if k != "CXDB_URL"}
    if kind == "cxdb":
        env["CXDB_URL"] = request.getfixturevalue("cxdb_process")
    (tmp_path / "gate.dot").write_text(GATE)

    def orchestra(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(ORCHESTRA), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    run = subprocess.Popen(
        [str(ORCHESTRA), "run", "gate.dot", "--wait-for-answers", "--json"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stdout is not None
        session = str(json.loads(run.stdout.readline())["session_id"])
        deadline = time.monotonic() + 60
        while True:  # the question reaches the store when the gate is reached
            shown = json.loads(orchestra("status", session, "--json").stdout)
            if shown["pending_question"] is not None or time.monotonic() > deadline:
                break
        assert shown["pending_question"]["text"] == "Merge?"
        human = orchestra("status", session)
        assert f"answer with:  orchestra answer {session} --choice KEY" in human.stdout
        answered = orchestra("answer", session, "--choice", "M")
        assert answered.returncode == 0, answered.stderr
        assert answered.stdout.strip() == "answered ask (Merge?): [M] Merge"
        assert run.wait(timeout=60) == 0
        final = json.loads(orchestra("status", session, "--json").stdout)
        assert final["completed_nodes"] == ["start", "work", "ask", "merge", "exit"]
    finally:
        run.kill()
