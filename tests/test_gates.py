"""Human gates: what a question shows, typed answers, time limits, and no terminal."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from click.testing import CliRunner

from orchestra.events import InterviewStarted, InterviewTimeout
from orchestra.interviewer import Answer, CallbackInterviewer, Question, QueueInterviewer
from orchestra.interviewer.base import QuestionType
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder, ScriptedBackend
from orchestra_cli.main import cli

REVIEW = """
digraph review {{
    start [shape=Mdiamond]; exit [shape=Msquare]
    draft [prompt="Write the notes"]
    ask   [shape=hexagon, label="Ship these notes?"{extra}]
    apply [prompt="Apply: {{{{ context['human.gate.text'] | default('') }}}}"]
    start -> draft -> ask
    ask -> apply [label="[S] Ship"]
    ask -> exit  [label="[R] Reject"]
    apply -> exit
}}
"""


def review(extra: str = "") -> str:
    return REVIEW.format(extra=extra)


async def run(
    source: str, store: EmbeddedStore, tmp_path: Path, interviewer: object, draft: str = "v1"
) -> tuple[object, EventRecorder, ScriptedBackend]:
    backend = ScriptedBackend({"draft": [draft]})
    events = EventRecorder()
    pipeline = Pipeline.load(
        source,
        store=store,
        backend=backend,
        interviewer=interviewer,  # type: ignore[arg-type]
        logs_root=tmp_path / "run",
    )
    result = await pipeline.run(on_event=events)
    return result, events, backend


class TestWhatTheQuestionShows:
    async def test_the_previous_stages_response(self, store: EmbeddedStore, tmp_path: Path) -> None:
        """The question carries the previous stage's response, from its response.md."""
        ask = QueueInterviewer(["S"])
        _, events, _ = await run(review(), store, tmp_path, ask, draft="Notes: fixed the bug.")
        assert ask.asked[0].details == "Notes: fixed the bug."
        (started,) = events.of(InterviewStarted)
        assert started.details == "Notes: fixed the bug."

    async def test_a_long_response_is_cut_and_names_its_file(
        self, store: EmbeddedStore, tmp_path: Path
    ) -> None:
        """A response longer than the budget is cut, with the path of the whole of it."""
        ask = QueueInterviewer(["S"])
        await run(review(), store, tmp_path, ask, draft="x" * 5000)
        details = ask.asked[0].details
        assert len(details) < 1700
        assert details.endswith(f"(the rest is in {tmp_path / 'run' / 'draft' / 'response.md'})")

    async def test_a_context_key_named_by_human_show(
        self, store: EmbeddedStore, tmp_path: Path
    ) -> None:
        """human.show names the context key to show instead."""
        ask = QueueInterviewer(["S"])
        await run(review(', human.show="context.last_stage"'), store, tmp_path, ask)
        assert ask.asked[0].details == "draft"


class TestTypedAnswers:
    async def test_the_text_reaches_the_next_prompt(
        self, store: EmbeddedStore, tmp_path: Path
    ) -> None:
        """human.input="text": the choice routes, the typed text lands in human.gate.text
        and in the next stage's prompt."""
        ask = QueueInterviewer(["S", Answer("tighten the intro", text="tighten the intro")])
        result, _, backend = await run(review(', human.input="text"'), store, tmp_path, ask)
        assert [q.type for q in ask.asked] == [QuestionType.MULTIPLE_CHOICE, QuestionType.FREEFORM]
        assert result.context["human.gate.text"] == "tighten the intro"  # type: ignore[attr-defined]
        assert ("apply", "Apply: tighten the intro") in backend.prompts

    async def test_a_gate_with_one_way_on_asks_only_for_text(
        self, store: EmbeddedStore, tmp_path: Path
    ) -> None:
        """With a single outgoing edge there is nothing to choose: only the text is asked."""
        source = """
        digraph d { start [shape=Mdiamond]; exit [shape=Msquare]
          say [shape=hexagon, label="Anything to add?", human.input="text"]
          start -> say -> exit }
        """
        ask = QueueInterviewer([Answer("all good", text="all good")])
        result, _, _ = await run(source, store, tmp_path, ask)
        assert [q.type for q in ask.asked] == [QuestionType.FREEFORM]
        assert result.context["human.gate.text"] == "all good"  # type: ignore[attr-defined]


async def never_answers(question: Question) -> Answer:
    await anyio.sleep_forever()
    raise AssertionError("unreachable")


class TestTimeLimits:
    @pytest.mark.parametrize("limit", ['human.timeout="50ms"', 'timeout="50ms"'])
    async def test_a_timeout_takes_the_default_choice(
        self, store: EmbeddedStore, tmp_path: Path, limit: str
    ) -> None:
        """human.timeout (or the spec's timeout) bounds the wait whatever the interviewer;
        the default choice is taken and recorded as a timeout."""
        source = review(f', {limit}, human.default_choice="Reject"')
        result, events, _ = await run(source, store, tmp_path, CallbackInterviewer(never_answers))
        assert result.completed_nodes == ("start", "draft", "ask", "exit")  # type: ignore[attr-defined]
        assert result.context["human.gate.timed_out"] is True  # type: ignore[attr-defined]
        assert len(events.of(InterviewTimeout)) == 1

    async def test_a_timeout_without_a_default_fails_the_gate(
        self, store: EmbeddedStore, tmp_path: Path
    ) -> None:
        """Without human.default_choice a timeout fails the node, saying why."""
        source = review(', human.timeout="50ms"')
        result, _, _ = await run(source, store, tmp_path, CallbackInterviewer(never_answers))
        assert result.status == "fail"  # type: ignore[attr-defined]
        assert result.failure_reason == (  # type: ignore[attr-defined]
            "human gate 'ask' timed out after 50ms and has no human.default_choice to take"
        )


class TestNoTerminal:
    def test_no_terminal_and_no_auto_approve_stops_with_exit_2(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With stdin not a terminal and no --auto-approve the run stops at the gate with
        exit 2 and says what to do; nothing is approved. Resumed with --auto-approve, it
        finishes."""
        monkeypatch.chdir(tmp_path)
        (tmp_path / "review.dot").write_text(review())
        stopped = CliRunner().invoke(cli, ["run", "review.dot"])
        assert stopped.exit_code == 2
        assert "node 'ask' asks a person ('Ship these notes?')" in stopped.stderr
        assert "pass --auto-approve" in stopped.stderr
        assert "orchestra resume 1" in stopped.stderr
        assert not (tmp_path / ".orchestra" / "runs" / "1" / "apply").exists()
        done = CliRunner().invoke(cli, ["resume", "1", "--auto-approve"])
        assert done.exit_code == 0, done.output
        assert "path: start → draft → ask → apply → exit" in done.stdout
