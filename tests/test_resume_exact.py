"""Resume is exact: a run killed (SIGKILL, in a real subprocess) at an interesting point and
then resumed ends with the same checkpoints, in the same order with the same context, retry
and visit counts, and the same side effects, as the same pipeline run without a stop.

The points: inside a `max_visits` loop on its second and third lap; between the retries of
a failing node; after a failure rerouted through `retry_target`; before the second visit to
a human gate that answers differently each time; inside a `loop_restart`; inside a fan-out
nested in a loop. Each tool counts its calls in a file and appends itself to trace.txt once
its call is over; the blocking one announces itself through a FIFO (read with a time limit)
on the call the test stops it at. Below them, the session state's fold on resume, pinned
one rule at a time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from orchestra.dot import parse_dot
from orchestra.engine.retry import policy_for
from orchestra.engine.session import (
    CHECKPOINT,
    SessionRecorder,
    decode,
    load_session,
    session_history,
)
from orchestra.store.embedded import EmbeddedStore
from orchestra.templates import render_shell
from tests.processes import read_fifo

ORCHESTRA = Path(sys.executable).with_name("orchestra")


def tool(node: str, *, block_at: int = 0, fail_on: tuple[int, ...] = ()) -> str:
    """A tool node's attributes: count the call, stop at call ``block_at`` unless GO=1,
    trace, then fail on the calls in ``fail_on``."""
    block = (
        f'if [ \\"$GO\\" != 1 ] && [ $n = {block_at} ]; then echo $$ > ready.fifo; sleep 60; fi; '
        if block_at
        else ""
    )
    fail = f"case $n in {'|'.join(map(str, fail_on))}) exit 1;; esac; " if fail_on else ""
    return (
        f'shape=parallelogram, tool_command="n=$(( $(cat {node}.count 2>/dev/null || echo 0) '
        f'+ 1 )); {block}echo $n > {node}.count; echo {node} >> trace.txt; {fail}echo {node}-$n"'
    )


LOOP = """
    digraph s { start [shape=Mdiamond]; exit [shape=Msquare]
      lap [{lap}]; decide [shape=diamond]; finish [{finish}]
      start -> lap -> decide
      decide -> lap [max_visits=3, weight=2]
      decide -> finish [weight=1]
      finish -> exit }"""

SCENARIOS: dict[str, str] = {
    # lap runs once, then three more times over the back edge (max_visits=3)
    **{f"loop-lap-{lap}": LOOP.replace("{lap}", f"{{lap{lap}}}") for lap in (2, 3)},
    # flaky fails twice and succeeds on its third attempt; stopped during the second
    "between-retries": """
        digraph s { start [shape=Mdiamond]; exit [shape=Msquare]
          flaky [{flaky}, max_retries=3, retry_policy=none]; finish [{finish}]
          start -> flaky -> finish -> exit }""",
    # risky exhausts its retries twice, each time sent back to prep; stopped in prep
    "retry-target": """
        digraph s { start [shape=Mdiamond]; exit [shape=Msquare]
          prep [{prep}]; risky [{risky}, max_retries=1, retry_target="prep",
                                retry_policy=none]
          finish [{finish}]
          start -> prep -> risky -> finish -> exit }""",
    # b fails once, which restarts the loop (fresh context); stopped in a after the restart
    "loop-restart": """
        digraph s { start [shape=Mdiamond]; exit [shape=Msquare]
          a [{a2}]; b [{b}]
          start -> a -> b
          b -> a [condition="outcome=fail", loop_restart=true]
          b -> exit [condition="outcome=success"] }""",
    # a fan-out in a loop; stopped in branch x on the second lap, after branch y finished
    "fan-out-in-a-loop": """
        digraph s { start [shape=Mdiamond]; exit [shape=Msquare]
          fan [shape=component, max_parallel=1]; join [shape=tripleoctagon]
          y [{y}]; x [{x2}]; check [shape=diamond]
          start -> fan
          fan -> y -> join
          fan -> x -> join
          join -> check
          check -> fan [max_visits=1, weight=2]
          check -> exit [weight=1] }""",
}

TOOLS = {
    "lap2": tool("lap", block_at=2),
    "lap3": tool("lap", block_at=3),
    "finish": tool("finish"),
    "flaky": tool("flaky", block_at=2, fail_on=(1, 2)),
    "prep": tool("prep", block_at=2),
    "risky": tool("risky", fail_on=(1, 2, 3, 4)),
    "a2": tool("a", block_at=2),
    "b": tool("b", fail_on=(1,)),
    "y": tool("y"),
    "x2": tool("x", block_at=2),
}


def project(tmp_path: Path, name: str, source: str) -> Path:
    directory = tmp_path / name
    directory.mkdir()
    for key, attributes in TOOLS.items():
        source = source.replace("{" + key + "}", attributes)
    (directory / "pipeline.dot").write_text(source)
    return directory


def run_killed(directory: Path, command: list[str]) -> str:
    """Run ``command``, SIGKILL it and its tool when the tool blocks; the session id."""
    os.mkfifo(directory / "ready.fifo")
    process = subprocess.Popen(
        command,
        cwd=directory,
        env={**os.environ, "GO": "0"},
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    session = json.loads(process.stdout.readline())["session_id"]
    tool_pid = int(read_fifo(directory / "ready.fifo", process))
    process.kill()  # the run first: killing its tool first would let it record the failure
    process.wait()
    os.killpg(tool_pid, signal.SIGKILL)
    return str(session)


def finish(directory: Path, command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command,
        cwd=directory,
        env={**os.environ, "GO": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


async def checkpoints(directory: Path, session: str) -> list[dict[str, Any]]:
    """Every checkpoint of the session, in order: its fields but its time, with the whole
    context as of that checkpoint in place of the keys it wrote (the first checkpoint after
    a resume writes them all again)."""
    store = await EmbeddedStore.open(directory / ".orchestra" / "state.db")
    try:
        turns = await session_history(store, session)
    finally:
        await store.close()
    found = []
    context: dict[str, Any] = {}
    for turn in turns:
        if turn.type_id == CHECKPOINT:
            fields = decode(turn)
            if fields.get("reset"):
                context.clear()
            context.update(fields.pop("context_set") or {})
            fields.pop("time_ms")
            found.append({**fields, "context": dict(context)})
    return found


def trace(directory: Path) -> list[str]:
    return (directory / "trace.txt").read_text().split()


class TestKilledAtEachPointResumesExactly:
    @pytest.mark.parametrize("scenario", sorted(SCENARIOS))
    async def test_same_checkpoints_and_side_effects(self, tmp_path: Path, scenario: str) -> None:
        """Killed at the scenario's point and resumed, the session has the checkpoints
        (node, outcome, context written, retries, visits, executions, next node) and the
        side effects of an uninterrupted run, in the same order."""
        source = SCENARIOS[scenario]
        clean = project(tmp_path, "clean", source)
        done = finish(clean, [str(ORCHESTRA), "run", "pipeline.dot", "--json"])
        clean_session = str(json.loads(done.stdout.splitlines()[0])["session_id"])

        crashed = project(tmp_path, "crashed", source)
        session = run_killed(crashed, [str(ORCHESTRA), "run", "pipeline.dot", "--json"])
        finish(crashed, [str(ORCHESTRA), "resume", session, "--quiet"])

        assert trace(crashed) == trace(clean)
        assert await checkpoints(crashed, session) == await checkpoints(clean, clean_session)


GATE = """
digraph gate {{
    start [shape=Mdiamond]; exit [shape=Msquare]
    work [{work}]
    gate [shape=hexagon, label="Again?"]
    done [{finish}]
    start -> work -> gate
    gate -> work [label="[A] Again"]
    gate -> done [label="[D] Done"]
    done -> exit
}}
"""

DRIVER = """
import sys
import anyio
from orchestra import Pipeline
from orchestra.interviewer import QueueInterviewer
from orchestra.pipeline import resume

async def main() -> None:
    mode, *answers = sys.argv[1:]
    ask = QueueInterviewer(answers)
    if mode == "run":
        def started(event):
            if type(event).__name__ == "PipelineStarted":
                print('{"session_id": "%s"}' % event.session_id, flush=True)
        result = await Pipeline.load("pipeline.dot", interviewer=ask).run(on_event=started)
    else:
        result = await resume(mode, interviewer=ask)
    assert result.status == "success", result.failure_reason

anyio.run(main)
"""


class TestAGateAnsweredDifferentlyEachVisit:
    async def test_resumed_before_the_second_visit(self, tmp_path: Path) -> None:
        """The gate says Again, then Done. Killed between the two visits and resumed with
        the second answer only, the session matches the uninterrupted one: the first answer
        is not given again."""
        source = GATE.format(work=tool("work", block_at=2), finish=tool("finish"))
        clean = tmp_path / "clean"
        clean.mkdir()
        (clean / "pipeline.dot").write_text(source)
        (clean / "driver.py").write_text(DRIVER)
        done = finish(clean, [sys.executable, "driver.py", "run", "Again", "Done"])
        clean_session = json.loads(done.stdout.splitlines()[0])["session_id"]

        crashed = tmp_path / "crashed"
        crashed.mkdir()
        (crashed / "pipeline.dot").write_text(source)
        (crashed / "driver.py").write_text(DRIVER)
        session = run_killed(crashed, [sys.executable, "driver.py", "run", "Again", "Done"])
        finish(crashed, [sys.executable, "driver.py", session, "Done"])

        assert trace(crashed) == trace(clean) == ["work", "work", "finish"]
        assert await checkpoints(crashed, session) == await checkpoints(clean, clean_session)


class TestTheFoldOnResume:
    async def test_a_nodes_recorded_entries_end_at_its_checkpoint(
        self, store: EmbeddedStore
    ) -> None:
        """What a handler recorded inside a node (a gate's answer) is gone from the state
        once the node's checkpoint is folded in: a later visit starts with nothing."""
        recorder = await _session(store)
        await recorder.record("gate", "answer", {"answer": {"execution": 1, "answer": "A"}})
        state = await load_session(store, recorder.session_id)
        assert state.recorded == {"gate": {"answer": {"answer": {"execution": 1, "answer": "A"}}}}
        await _checkpoint(recorder, "gate", next_node="work")
        assert (await load_session(store, recorder.session_id)).recorded == {}

    async def test_an_ended_sessions_position_is_its_last_completed_node(
        self, store: EmbeddedStore
    ) -> None:
        """A session interrupted after completing `a` (next: `b`) is at `a`; while it has
        not ended it is at `b`, the node it runs next."""
        recorder = await _session(store)
        await _checkpoint(recorder, "a", next_node="b")
        assert (await load_session(store, recorder.session_id)).position == "b"
        await recorder.ended("interrupted", "stopped")
        assert (await load_session(store, recorder.session_id)).position == "a"

    async def test_visits_and_retries_are_restored(self, store: EmbeddedStore) -> None:
        """Visit counts and retry counts come back from the checkpoints that wrote them."""
        recorder = await _session(store)
        await _checkpoint(recorder, "risky", next_node="prep", retries={"risky": 1})
        await _checkpoint(recorder, "prep", next_node="lap", visits={("prep", "lap"): 2})
        state = await load_session(store, recorder.session_id)
        assert state.retries == {"risky": 1, "prep": 0}
        assert state.visits == {("prep", "lap"): 2}


class TestRules:
    def test_the_legacy_default_max_retry_counts_with_a_preset(self) -> None:
        """`default_max_retry` (the legacy name) sets the attempts even with a preset
        retry_policy: linear's own three attempts give way to max_retries + 1 = 2."""
        graph = parse_dot(
            "digraph g { graph [default_max_retry=1]; start [shape=Mdiamond]; "
            'x [retry_policy="linear"]; exit [shape=Msquare]; start -> x -> exit }'
        )
        assert policy_for(graph.nodes["x"], graph).max_attempts == 2

    def test_none_renders_as_an_empty_shell_word(self) -> None:
        """A context value that is None becomes '' in a tool command, not the word None."""
        assert render_shell("echo x{{ v }}x", {}, {"v": None}, "t") == "echo x''x"


async def _session(store: EmbeddedStore) -> SessionRecorder:
    return await SessionRecorder.start(
        store,
        pipeline="p",
        dot_path="",
        dot_source="",
        goal="",
        variables={},
        logs_root=lambda _: "",
    )


async def _checkpoint(
    recorder: SessionRecorder,
    node: str,
    *,
    next_node: str,
    retries: dict[str, int] | None = None,
    visits: dict[tuple[str, str], int] | None = None,
) -> None:
    await recorder.checkpoint(
        node_id=node,
        status="success",
        outcome={"outcome": "success"},
        context_set={},
        retries=retries if retries is not None else {node: 0},
        visits=visits or {},
        executions={node: 1},
        next_node=next_node,
    )
