"""The manager loop (spec §4.11): a ``house`` node runs a child pipeline as a second session
in the same store, observes it into ``stack.child.*``, may steer it, and ends with it, on its
stop condition, or after its maximum number of cycles."""

from __future__ import annotations

import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from orchestra.engine.runner import RunResult
from orchestra.engine.session import load_session
from orchestra.events import Event, StageRetrying
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore

#: a child that runs to its exit
FINISHES = """
digraph finishes {
    start [shape=Mdiamond]
    work [shape=parallelogram, tool_command="echo {{ target }}"]
    done [shape=Msquare]
    start -> work -> done
}
"""

#: a child whose only stage fails
BREAKS = """
digraph breaks {
    start [shape=Mdiamond]
    work [shape=parallelogram, tool_command="echo disk full >&2; exit 3"]
    done [shape=Msquare]
    start -> work -> done
}
"""

#: a child that would take half a minute: a test ending fast proves it was cancelled
STALLS = """
digraph stalls {
    start [shape=Mdiamond]
    slow [shape=parallelogram, tool_command="sleep 30"]
    done [shape=Msquare]
    start -> slow -> done
}
"""

#: well under STALLS' sleep, with room for a slow machine
FAST = 10.0


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).strip() + "\n", encoding="utf-8")
    return path


def parent(directory: Path, manager: str, graph: str = "") -> Path:
    """``parent.dot`` in ``directory``: start -> boss -> done, ``boss`` a manager polling
    every 10ms with the extra attributes ``manager``."""
    attributes = ", ".join(a for a in ('shape=house, manager.poll_interval="10ms"', manager) if a)
    return write(
        directory / "parent.dot",
        f"""
        digraph parent {{
            graph [goal="supervise" {graph}]
            start [shape=Mdiamond]
            boss [{attributes}]
            done [shape=Msquare]
            start -> boss -> done
        }}
        """,
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[EmbeddedStore]:
    opened = await EmbeddedStore.open(tmp_path / "state.db")
    yield opened
    await opened.close()


async def run(path: Path, store: EmbeddedStore, **kwargs: Any) -> RunResult:
    pipeline = Pipeline.load(path, store=store, logs_root=path.parent / "run", **kwargs)
    return await pipeline.run()


def boss(result: RunResult) -> dict[str, Any]:
    """The manager node's recorded outcome."""
    return dict(result.node_outcomes["boss"])


async def child_session(store: EmbeddedStore, result: RunResult) -> tuple[str, str]:
    """(pipeline name, how it ended) of the child session the manager started."""
    state = await load_session(store, str(result.context["stack.child.session_id"]))
    return state.pipeline, state.ended


class TestChildRunsToTheEnd:
    """The manager ends with its child, and reports what the child did."""

    async def test_child_success_is_manager_success(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A child reaching its exit is a manager SUCCESS, recorded in ``stack.child.*``."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot"')

        result = await run(path, store, variables={"target": "prod"})

        assert result.succeeded
        assert boss(result)["outcome"] == "success"
        assert result.context["stack.child.status"] == "completed"
        assert result.context["stack.child.outcome"] == "success"
        assert result.context["stack.child.completed_nodes"] == ["start", "work", "done"]

    async def test_child_is_a_second_session_in_the_same_store(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The child's session id names another session of the store, finished successfully."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot"')

        result = await run(path, store, variables={"target": "prod"})

        child_id = result.context["stack.child.session_id"]
        sessions = {str(c.context_id) for c in await store.list_contexts()}
        assert sessions == {result.session_id, child_id}
        assert child_id != result.session_id
        assert await child_session(store, result) == ("finishes", "success")

    async def test_child_runs_with_the_run_variables_under_the_manager_stage(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The child sees the run's variables; its stages log under ``boss/child/``."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot"')

        await run(path, store, variables={"target": "prod"})

        output = tmp_path / "run" / "boss" / "child" / "work" / "tool_output.txt"
        assert "prod" in output.read_text(encoding="utf-8")

    async def test_child_dotfile_may_be_a_graph_attribute(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """``stack.child_dotfile`` on the graph serves a manager node without one."""
        (tmp_path / "children").mkdir()
        write(tmp_path / "children" / "child.dot", FINISHES)
        path = parent(tmp_path, "", graph=', stack.child_dotfile="children/child.dot"')

        result = await run(path, store, variables={"target": "prod"})

        assert result.context["stack.child.status"] == "completed"

    async def test_child_failure_is_manager_failure_naming_the_reason(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A failed child makes the manager FAIL with the child's failure reason."""
        write(tmp_path / "child.dot", BREAKS)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot"')

        result = await run(path, store)

        assert not result.succeeded
        reason = boss(result)["failure_reason"]
        assert reason.startswith("child pipeline failed:")
        assert "exit status 3" in reason
        assert "disk full" in reason
        assert result.context["stack.child.status"] == "failed"
        assert result.context["stack.child.outcome"] == "fail"

    async def test_manager_wakes_when_the_child_ends(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A child ending mid-wait ends the manager then, not at the end of a 30s poll."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot", manager.poll_interval="30s"')
        began = time.monotonic()

        result = await run(path, store, variables={"target": "prod"})

        assert time.monotonic() - began < FAST
        assert result.context["stack.child.status"] == "completed"


class TestStopCondition:
    """A satisfied ``manager.stop_condition`` is SUCCESS, and the child is cancelled."""

    async def test_stop_on_child_status_cancels_the_child(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """``stack.child.status=running`` holds at once: the child is cancelled mid-stage."""
        write(tmp_path / "child.dot", STALLS)
        path = parent(
            tmp_path,
            'stack.child_dotfile="child.dot", manager.stop_condition="stack.child.status=running"',
        )
        began = time.monotonic()

        result = await run(path, store)

        assert time.monotonic() - began < FAST
        assert result.succeeded
        assert boss(result)["notes"] == "stop condition satisfied"
        assert result.context["stack.child.status"] == "cancelled"
        assert await child_session(store, result) == ("stalls", "interrupted")

    async def test_stop_on_the_child_reaching_a_stage(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A condition on the child's current node stops the child as that stage starts."""
        write(tmp_path / "child.dot", STALLS)
        path = parent(
            tmp_path,
            'stack.child_dotfile="child.dot", '
            'manager.stop_condition="context.stack.child.current_node=slow"',
        )
        began = time.monotonic()

        result = await run(path, store)

        assert time.monotonic() - began < FAST
        assert result.succeeded
        assert result.context["stack.child.current_node"] == "slow"
        assert result.context["stack.child.completed_nodes"] == ["start"]
        assert await child_session(store, result) == ("stalls", "interrupted")

    async def test_unmet_condition_lets_the_child_finish(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A condition that never holds leaves the child to run to its end."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(
            tmp_path,
            'stack.child_dotfile="child.dot", manager.stop_condition="context.halt=yes"',
        )

        result = await run(path, store, variables={"target": "prod"})

        assert boss(result)["notes"] == "child completed"
        assert result.context["stack.child.status"] == "completed"

    async def test_stop_condition_that_does_not_parse_fails_before_the_child_starts(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A malformed stop condition is a FAIL naming the node; no child session begins."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(
            tmp_path,
            'stack.child_dotfile="child.dot", manager.stop_condition="stack.child.status=="',
        )

        result = await run(path, store)

        reason = boss(result)["failure_reason"]
        assert "'boss'" in reason
        assert "manager.stop_condition" in reason
        assert [str(c.context_id) for c in await store.list_contexts()] == [result.session_id]


class TestMaxCycles:
    """A child still running after ``manager.max_cycles`` cycles fails the manager."""

    async def test_exceeding_max_cycles_fails_and_cancels_the_child(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Three 10ms cycles of a stalled child: FAIL "max cycles", the child cancelled."""
        write(tmp_path / "child.dot", STALLS)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot", manager.max_cycles=3')
        began = time.monotonic()

        result = await run(path, store)

        assert time.monotonic() - began < FAST
        assert not result.succeeded
        assert boss(result)["failure_reason"] == "max cycles (3) exceeded"
        assert result.context["stack.manager.cycle"] == 3
        assert result.context["stack.child.status"] == "cancelled"
        assert await child_session(store, result) == ("stalls", "interrupted")


class TestObservation:
    """Without ``observe`` the manager still follows its child but writes no telemetry."""

    async def test_cycle_telemetry_only_with_observe(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """``manager.actions=wait`` writes no cycle telemetry but still reports the child."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot", manager.actions="wait"')

        result = await run(path, store, variables={"target": "prod"})

        assert "stack.manager.cycle" not in result.context
        assert result.context["stack.child.status"] == "completed"


class TestSteering:
    """With ``steer`` in ``manager.actions`` the node's prompt reaches the child's stage."""

    def stalled_child(self, tmp_path: Path, actions: str) -> Path:
        write(tmp_path / "child.dot", STALLS)
        return parent(
            tmp_path,
            f'stack.child_dotfile="child.dot", manager.actions="{actions}", '
            'prompt="Stop gold-plating; ship it.", '
            'manager.stop_condition="stack.child.current_node=slow"',
        )

    async def test_steer_writes_the_prompt_in_the_running_stage_directory(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """``steer.md`` in the child's current stage directory holds the manager's prompt."""
        path = self.stalled_child(tmp_path, "observe,steer,wait")

        await run(path, store)

        steer = tmp_path / "run" / "boss" / "child" / "slow" / "steer.md"
        assert steer.read_text(encoding="utf-8") == "Stop gold-plating; ship it."

    async def test_no_steering_without_the_action(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The default actions (observe, wait) leave the child's stages alone."""
        path = self.stalled_child(tmp_path, "observe,wait")

        await run(path, store)

        assert list((tmp_path / "run" / "boss" / "child").rglob("steer.md")) == []


class TestConfigurationErrors:
    """A manager that cannot start its child fails at once, saying why."""

    async def test_missing_child_dotfile_names_the_node(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """No ``stack.child_dotfile`` on the node or the graph: FAIL naming the node."""
        path = parent(tmp_path, "")

        result = await run(path, store)

        reason = boss(result)["failure_reason"]
        assert "'boss'" in reason
        assert "stack.child_dotfile" in reason

    async def test_child_file_that_does_not_exist_names_the_path(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A child DOT file that is not there: FAIL naming the path it was looked for at."""
        path = parent(tmp_path, 'stack.child_dotfile="missing.dot"')

        result = await run(path, store)

        reason = boss(result)["failure_reason"]
        assert str(tmp_path / "missing.dot") in reason
        assert "does not exist" in reason

    async def test_child_that_does_not_validate_names_its_file(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A child DOT file with errors fails the manager, naming the node and the file."""
        write(tmp_path / "child.dot", "digraph broken { work [shape=box] }")
        path = parent(tmp_path, 'stack.child_dotfile="child.dot"')

        result = await run(path, store)

        reason = boss(result)["failure_reason"]
        assert "'boss'" in reason
        assert "child.dot" in reason

    async def test_attaching_to_a_running_child_is_refused(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """``stack.child_autostart=false`` is a FAIL saying it is not supported."""
        write(tmp_path / "child.dot", FINISHES)
        path = parent(tmp_path, 'stack.child_dotfile="child.dot", stack.child_autostart=false')

        result = await run(path, store)

        assert "not supported" in boss(result)["failure_reason"]

    async def test_configuration_errors_are_not_retried(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A missing child file fails the node on its first attempt despite max_retries."""
        path = parent(tmp_path, 'stack.child_dotfile="missing.dot", max_retries=3')
        events: list[Event] = []
        pipeline = Pipeline.load(path, store=store, logs_root=tmp_path / "run")

        result = await pipeline.run(on_event=events.append)

        assert not result.succeeded
        assert [e for e in events if isinstance(e, StageRetrying)] == []
