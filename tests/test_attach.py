"""Following a session from its turns: orchestra.follow and `orchestra attach`."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import pytest

from orchestra.engine.session import SESSION_KIND, SessionRecorder
from orchestra.events import (
    Event,
    ParallelBranchCompleted,
    ParallelStarted,
    PipelineCompleted,
    PipelineFailed,
    PipelineStarted,
    StageCompleted,
    StageStarted,
)
from orchestra.follow import follow
from orchestra.graph import Graph, Node
from orchestra.handlers import default_registry
from orchestra.handlers.base import StageRun
from orchestra.outcome import Outcome
from orchestra.pipeline import Pipeline
from orchestra.store.base import Store
from tests.processes import read_fifo, write_fifo

ORCHESTRA = Path(sys.executable).with_name("orchestra")

LINEAR = """
digraph followed {
    start [shape=Mdiamond]
    one   [type="gate", label="First"]
    two   [shape=parallelogram, tool_command="true"]
    exit  [shape=Msquare]
    start -> one -> two -> exit
}
"""

FAN = """
digraph fan {
    start [shape=Mdiamond]
    fan   [shape=component]
    a     [shape=parallelogram, tool_command="true"]
    b     [shape=parallelogram, tool_command="false"]
    join  [shape=tripleoctagon]
    exit  [shape=Msquare]
    start -> fan
    fan -> a -> join
    fan -> b -> join
    join -> exit
}
"""


class Gate:
    """A handler that waits until the test opens it."""

    def __init__(self) -> None:
        self.entered = anyio.Event()
        self.opened = anyio.Event()

    async def execute(self, node: Node, context: object, graph: Graph, stage: StageRun) -> Outcome:
        self.entered.set()
        await self.opened.wait()
        return Outcome.success()


def summary(events: list[Event]) -> list[str]:
    return [f"{type(e).__name__}:{e.node_id or ''}" for e in events]


class TestFollow:
    async def test_finished_session_replays_its_stages_in_order(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """A finished session is followed from its start to its end: each stage started
        then completed, in order, with labels from the recorded pipeline."""
        registry = default_registry()
        gate = Gate()
        gate.opened.set()
        registry.register("gate", gate)
        pipeline = Pipeline.load(LINEAR, store=any_store, handlers=registry, logs_root=tmp_path)
        result = await pipeline.run()

        events = [event async for event in follow(any_store, result.session_id)]

        assert summary(events) == [
            "PipelineStarted:",
            *(
                f"{kind}:{node}"
                for node in ("start", "one", "two", "exit")
                for kind in ("StageStarted", "StageCompleted")
            ),
            "PipelineCompleted:",
        ]
        started = [e for e in events if isinstance(e, StageStarted)]
        assert started[1].label == "First"
        assert isinstance(events[0], PipelineStarted)
        assert events[0].pipeline == "followed"

    async def test_a_chat_shows_its_messages(self, any_store: Store, tmp_path: Path) -> None:
        """A chat node's messages follow as ChatMessage events, in order, inside its stage."""
        from orchestra.events import ChatMessage
        from orchestra.interviewer.base import QueueInterviewer

        source = LINEAR.replace(
            'one   [type="gate", label="First"]',
            'one [label="First", prompt="talk", agent.mode="interactive"]',
        )
        assert source != LINEAR
        pipeline = Pipeline.load(
            source,
            store=any_store,
            backend="simulation",
            interviewer=QueueInterviewer(["hello", "/done"]),
            logs_root=tmp_path,
        )
        result = await pipeline.run()

        events = [event async for event in follow(any_store, result.session_id)]
        said = [(e.who, e.text) for e in events if isinstance(e, ChatMessage)]
        assert said == [
            ("agent", "[Simulated] Reply 1 for stage: one"),
            ("human", "hello"),
            ("agent", '[Simulated] Reply 2 for stage: one to "hello"'),
            ("human", "/done"),
        ]
        names = summary(events)
        chat = [i for i, name in enumerate(names) if name == "ChatMessage:one"]
        assert names.index("StageStarted:one") < chat[0]
        assert names.index("StageCompleted:one") > chat[-1]

    async def test_live_session_shows_the_running_stage_then_the_end(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """While a stage runs, the follower has already reported it started; when the run
        ends the follower ends with PipelineCompleted."""
        registry = default_registry()
        gate = Gate()
        registry.register("gate", gate)
        pipeline = Pipeline.load(LINEAR, store=any_store, handlers=registry, logs_root=tmp_path)
        seen: list[Event] = []
        waiting_on_one = anyio.Event()

        async def watch(session: str) -> None:
            async for event in follow(any_store, session, interval=0.01):
                seen.append(event)
                if isinstance(event, StageStarted) and event.node_id == "one":
                    waiting_on_one.set()

        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.run)
            await gate.entered.wait()
            assert pipeline.session_id is not None
            group.start_soon(watch, pipeline.session_id)
            await waiting_on_one.wait()
            assert not any(isinstance(e, StageCompleted) and e.node_id == "one" for e in seen)
            gate.opened.set()

        assert isinstance(seen[-1], PipelineCompleted)
        assert summary(seen).count("StageCompleted:one") == 1

    async def test_turns_written_between_reading_the_head_and_the_turns_are_not_lost(
        self, any_store: Store
    ) -> None:
        """The session moves on between the follower's look at its head and its read of the
        turns (a busy machine does that): every checkpoint is still reported, once."""
        recorder = await SessionRecorder.start(
            any_store,
            pipeline="racing",
            dot_path="",
            dot_source="",
            goal="",
            variables={},
            logs_root=lambda _: "",
        )

        async def checkpoint(node: str, next_node: str) -> None:
            await recorder.checkpoint(
                node_id=node,
                status="success",
                outcome={"outcome": "success"},
                context_set={},
                retries={},
                visits={},
                executions={node: 1},
                next_node=next_node,
            )

        await checkpoint("start", "a")

        class MovesOnWhileReading:
            """The store, with the rest of the run written just before the first read."""

            def __init__(self) -> None:
                self.moved = False

            def __getattr__(self, name: str) -> object:
                return getattr(any_store, name)

            async def get_last(self, context_id: int, limit: int = 64) -> object:
                if not self.moved:
                    self.moved = True
                    for node, after in (("a", "b"), ("b", "c"), ("c", "exit"), ("exit", "")):
                        await checkpoint(node, after)
                    await recorder.ended("success")
                return await any_store.get_last(context_id, limit)

        racing = MovesOnWhileReading()
        events = [e async for e in follow(racing, recorder.session_id, interval=0.01)]  # type: ignore[arg-type]
        assert racing.moved
        done = [e.node_id for e in events if isinstance(e, StageCompleted)]
        assert done == ["start", "a", "b", "c", "exit"]
        assert isinstance(events[-1], PipelineCompleted)

    async def test_branches_show_as_a_fan_out(self, any_store: Store, tmp_path: Path) -> None:
        """Recorded branch results become ParallelStarted and one ParallelBranchCompleted
        per branch, with its outcome."""
        pipeline = Pipeline.load(FAN, store=any_store, logs_root=tmp_path)
        result = await pipeline.run()

        events = [event async for event in follow(any_store, result.session_id)]

        [fan] = [e for e in events if isinstance(e, ParallelStarted)]
        assert fan.branches == ("a", "b")
        branches = {e.branch: e.success for e in events if isinstance(e, ParallelBranchCompleted)}
        assert branches == {"a": True, "b": False}

    async def test_session_whose_process_is_gone_ends_as_crashed(
        self, any_store: Store, tmp_path: Path
    ) -> None:
        """A session not ended whose recorded process no longer exists is reported as
        crashed, with the command that resumes it, instead of being followed forever."""
        recorder = await SessionRecorder.start(
            any_store,
            pipeline="gone",
            dot_path="",
            dot_source=LINEAR,
            goal="",
            variables={},
            logs_root=lambda session: str(tmp_path),
        )
        dead = subprocess.Popen(["true"])
        dead.wait()  # its pid now names no process
        await recorder.record("", SESSION_KIND, {"pid": dead.pid, "host": os.uname().nodename})

        events = [event async for event in follow(any_store, recorder.session_id)]

        assert isinstance(events[-1], PipelineFailed)
        assert events[-1].status == "crashed"
        assert f"orchestra resume {recorder.session_id}" in events[-1].error


def read_until(stream: queue.Queue[str], needle: str) -> list[str]:
    """Lines from a reader thread's queue up to the first containing ``needle``."""
    lines: list[str] = []
    while True:
        line = stream.get(timeout=30)
        lines.append(line)
        if needle in line:
            return lines


def reader(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


@pytest.fixture(params=["embedded", "cxdb"])
def store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment of the `orchestra` processes: the default embedded store, or a fake
    CXDB server started as its own process and named by CXDB_URL."""
    if request.param == "embedded":
        return dict(os.environ)
    return {**os.environ, "CXDB_URL": request.getfixturevalue("cxdb_process")}


class TestAttachCommand:
    def test_attach_follows_a_run_in_another_process(
        self, tmp_path: Path, store_env: dict[str, str]
    ) -> None:
        """`orchestra attach` started while `orchestra run` waits in a tool shows that stage
        running, then the rest of the run and its summary, and exits 0 (on either store)."""
        (tmp_path / "pipeline.dot").write_text(
            """
            digraph live {
                start [shape=Mdiamond]
                exit  [shape=Msquare]
                first [shape=parallelogram, tool_command="true"]
                wait  [shape=parallelogram, tool_command="echo $$ > ready.fifo; cat release.fifo"]
                last  [shape=parallelogram, tool_command="true"]
                start -> first -> wait -> last -> exit
            }
            """
        )
        os.mkfifo(tmp_path / "ready.fifo")
        os.mkfifo(tmp_path / "release.fifo")
        run = subprocess.Popen(
            [str(ORCHESTRA), "run", "pipeline.dot", "--json"],
            cwd=tmp_path,
            env=store_env,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert run.stdout is not None
            session = json.loads(run.stdout.readline())["session_id"]
            read_fifo(tmp_path / "ready.fifo", run)  # the wait stage is running
            attach = subprocess.Popen(
                [str(ORCHESTRA), "attach", str(session)],
                cwd=tmp_path,
                env=store_env,
                stdout=subprocess.PIPE,
                text=True,
            )
            lines = reader(attach)
            shown = read_until(lines, "wait")
            assert any("first" in line for line in shown)
            write_fifo(tmp_path / "release.fifo", "go\n")
            rest = read_until(lines, "session:")
            assert attach.wait(timeout=30) == 0
            assert any("success" in line for line in rest)
            assert any("last" in line for line in rest)
        finally:
            run.kill()
            run.wait()

    def test_attach_to_an_unknown_session_says_so(self, tmp_path: Path) -> None:
        """An unknown session id is one line on stderr and exit status 2."""
        result = subprocess.run(
            [str(ORCHESTRA), "attach", "42", "--store", str(tmp_path / "s.db")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert result.returncode == 2
        assert "session 42 does not exist" in result.stderr
        assert "Traceback" not in result.stderr


@pytest.fixture(autouse=True)
def _console_script() -> None:
    assert ORCHESTRA.exists(), f"the console script {ORCHESTRA} is not installed"
