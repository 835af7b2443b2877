"""DESIGN.md §4 "Spec decisions" 1-8: where the spec is silent or contradicts itself, what
the engine does. One class per decision (9, unknown attributes, belongs to the parser)."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

import anyio
import pytest
from pipelines import delays, dot, load, turns

from orchestra.engine.context import Context
from orchestra.engine.session import (
    CHECKPOINT,
    RECORDED,
    SessionState,
    decode,
    session_history,
)
from orchestra.errors import ValidationError
from orchestra.events import Event, ParallelBranchCompleted, StageRetrying
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.outcome import Outcome
from orchestra.pipeline import Pipeline, resume
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder
from orchestra.validation import Severity


class Probe:
    """A custom handler that records the context each node sees and the order nodes ran in,
    and succeeds with ``context_updates`` from the node's ``writes`` attribute
    (``key=value``); it also writes ``<node>.direct`` straight into its context."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        self.seen.append((node.id, context.snapshot()))
        context.set(f"{node.id}.direct", "written in place")
        key, _, value = str(node.attrs.get("writes", "")).partition("=")
        return Outcome.success(f"probed {node.id}", context_updates={key: value} if key else {})

    @property
    def ran(self) -> list[str]:
        return [node_id for node_id, _ in self.seen]


def routed(work: str, edges: str = "") -> str:
    """start -> prep -> work -> next -> done, with ``work``'s attributes and extra ``edges``.
    recover and rescue are failure destinations; prep's never-true edges only make them
    reachable, since an unreachable node would not load."""
    return dot(
        f"""
        digraph routed {{
            start [shape=Mdiamond]
            prep [prompt="Prepare"]
            work [prompt="Work", {work}]
            next [prompt="Next"]
            recover [prompt="Recover"]
            rescue [prompt="Rescue"]
            done [shape=Msquare]
            start -> prep -> work -> next -> done
            recover -> done
            rescue -> done
            prep -> recover [condition="context.never=1"]
            prep -> rescue [condition="context.never=1"]
            {edges}
        }}
        """
    )


class TestFailureRouting:
    """§4.1: a FAIL follows a matching condition edge, else the node's retry_target, else
    its fallback_retry_target, else the run fails; never an unconditional edge."""

    async def test_fail_follows_a_matching_fail_edge_first(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """An outcome=fail edge wins over the node's retry targets."""
        pipeline = load(
            routed(
                'sim_outcomes="fail", retry_target=prep, fallback_retry_target=rescue',
                edges='work -> recover [condition="outcome=fail"]',
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "prep", "work", "recover", "done")
        assert result.status == "success"

    async def test_fail_without_fail_edge_jumps_to_retry_target(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With no matching edge a FAIL goes to retry_target, before the fallback."""
        pipeline = load(
            routed('sim_outcomes="fail,success", retry_target=prep, fallback_retry_target=rescue'),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.completed_nodes == (
            "start",
            "prep",
            "work",
            "prep",
            "work",
            "next",
            "done",
        )

    async def test_fail_without_retry_target_jumps_to_fallback_retry_target(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With no fail edge and no retry_target a FAIL goes to fallback_retry_target."""
        pipeline = load(
            routed('sim_outcomes="fail", fallback_retry_target=rescue'), tmp_path, store
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "prep", "work", "rescue", "done")

    async def test_fail_with_no_route_fails_the_run(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With no fail edge and no retry target the run fails with the stage's reason,
        although an unconditional (and a heavy) edge leaves the node."""
        pipeline = load(
            routed(
                'sim_outcomes="fail"',
                edges='work -> rescue [weight=100]\nwork -> recover [condition="outcome=success"]',
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.status == "fail"
        assert result.failure_reason == "simulated fail"
        assert result.completed_nodes == ("start", "prep", "work")
        checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert checkpoint["current_node"] == "work"

    async def test_success_still_takes_the_unconditional_edge(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The rule is about failures: a SUCCESS with the same edges goes on as usual."""
        pipeline = load(routed('sim_outcomes="success", retry_target=prep'), tmp_path, store)

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "prep", "work", "next", "done")


RETRYING = dot(
    """
    digraph retrying {{
        start [shape=Mdiamond]
        work [{work}]
        next [prompt="Next"]
        done [shape=Msquare]
        start -> work -> next -> done
    }}
    """
)


class Refuses:
    """A custom handler that raises ``TerminalError``, as for invalid configuration."""

    def __init__(self) -> None:
        self.calls = 0

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        self.calls += 1
        raise TerminalError(f"node '{node.id}': invalid api_key setting")


class TestRetries:
    """§4.2: max_retries retries RETRY and FAIL alike, with backoff between attempts;
    a failure retrying cannot fix is not retried."""

    @pytest.mark.parametrize("status", ["retry", "fail"])
    async def test_retry_and_fail_are_both_retried_with_backoff(
        self, tmp_path: Path, store: EmbeddedStore, status: str
    ) -> None:
        """Two RETRY (or FAIL) outcomes then a SUCCESS: three attempts, two jittered
        exponential delays (0.2 s then 0.4 s, each times 0.5-1.5)."""
        log = EventRecorder()
        pipeline = load(
            RETRYING.format(
                work=f'prompt="Work", max_retries=2, sim_outcomes="{status},{status},success"'
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run(on_event=log)

        assert result.status == "success"
        assert log.attempts("work") == [1, 2, 3]
        first, second = delays(pipeline)
        assert 0.1 <= first < 0.3
        assert 0.2 <= second < 0.6
        retrying = [e for e in log.events if isinstance(e, StageRetrying)]
        assert [e.delay for e in retrying] == delays(pipeline)

    async def test_exhausted_retries_fail_the_node(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A node that fails every attempt runs max_retries + 1 times, then fails."""
        log = EventRecorder()
        pipeline = load(
            RETRYING.format(work='prompt="Work", max_retries=2, sim_outcomes="fail"'),
            tmp_path,
            store,
        )

        result = await pipeline.run(on_event=log)

        assert result.status == "fail"
        assert log.attempts("work") == [1, 2, 3]
        assert len(delays(pipeline)) == 2
        assert result.context["internal.retry_count.work"] == 2

    async def test_terminal_error_is_not_retried(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A handler's TerminalError fails the node at its first attempt, without backoff."""
        refuses = Refuses()
        pipeline = load(
            RETRYING.format(work='type="refuses", max_retries=3'),
            tmp_path,
            store,
            handlers={"refuses": refuses},
        )

        result = await pipeline.run()

        assert refuses.calls == 1
        assert delays(pipeline) == []
        assert result.status == "fail"
        assert result.failure_reason == "node 'work': invalid api_key setting"

    async def test_bad_prompt_template_is_not_retried(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A prompt naming an undefined variable fails once, naming it, without backoff."""
        log = EventRecorder()
        pipeline = load(
            RETRYING.format(work='prompt="Summarise {{ missing_ticket }}", max_retries=3'),
            tmp_path,
            store,
        )

        result = await pipeline.run(on_event=log)

        assert log.attempts("work") == [1]
        assert delays(pipeline) == []
        assert result.status == "fail"
        assert "missing_ticket" in result.failure_reason


CONDITIONAL = dot(
    """
    digraph conditional {{
        {graph}
        start [shape=Mdiamond]
        work [prompt="Work", sim_outcomes="{outcome}"]
        gate [shape=diamond]
        recover [prompt="Recover"]
        ship [prompt="Ship"]
        done [shape=Msquare]
        start -> work
        work -> gate [condition="outcome=fail"]
        work -> gate [condition="outcome=success"]
        gate -> recover [condition="outcome!=success"]
        gate -> ship [condition="outcome=success"]
        recover -> done
        ship -> done
    }}
    """
)


class TestConditionalPassThrough:
    """§4.3: a conditional node passes through the previous outcome and preferred label."""

    @pytest.mark.parametrize(("outcome", "taken"), [("fail", "recover"), ("success", "ship")])
    async def test_conditional_routes_on_the_previous_outcome(
        self, tmp_path: Path, store: EmbeddedStore, outcome: str, taken: str
    ) -> None:
        """gate -> recover [condition="outcome!=success"] fires after a failed stage."""
        pipeline = load(CONDITIONAL.format(graph="", outcome=outcome), tmp_path, store)

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "work", "gate", taken, "done")
        assert result.node_outcomes["gate"]["outcome"] == outcome

    async def test_conditional_passes_the_preferred_label_through(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A label chosen before the gate selects the gate's edge of that label."""
        pipeline = load(
            dot(
                """
            digraph labelled {
                start [shape=Mdiamond]
                review [prompt="Review", sim_outcomes="success:Approve"]
                gate [shape=diamond]
                hold [prompt="Hold"]
                ship [prompt="Ship"]
                done [shape=Msquare]
                start -> review -> gate
                gate -> hold [label="Hold"]
                gate -> ship [label="[A] Approve"]
                hold -> done
                ship -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "review", "gate", "ship", "done")
        assert result.node_outcomes["gate"]["preferred_label"] == "Approve"

    async def test_conditional_passing_a_failure_is_not_retried(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A failure a conditional passes through is data to route on: the gate runs once
        even when the graph gives every node retries."""
        log = EventRecorder()
        pipeline = load(
            CONDITIONAL.format(graph="graph [default_max_retries=2]", outcome="fail"),
            tmp_path,
            store,
        )

        result = await pipeline.run(on_event=log)

        assert log.attempts("gate") == [1]
        assert log.attempts("work") == [1, 2, 3]
        assert "recover" in result.completed_nodes


class TestUnreachableNodeIsError:
    """§4.4: a node the start cannot reach is an ERROR, so the pipeline does not load."""

    def test_unreachable_node_refuses_to_load(self) -> None:
        """Pipeline.load raises ValidationError carrying an ERROR for each unreachable node."""
        source = dot(
            """
            digraph islands {
                start [shape=Mdiamond]
                work [prompt="Work"]
                island [prompt="Island"]
                lagoon [prompt="Lagoon"]
                done [shape=Msquare]
                start -> work -> done
                island -> lagoon -> island
            }
            """
        )
        with pytest.raises(ValidationError) as raised:
            Pipeline.load(source)

        unreachable = {
            d.node_id: d.severity for d in raised.value.diagnostics if d.rule == "reachability"
        }
        assert unreachable == {"island": Severity.ERROR, "lagoon": Severity.ERROR}
        assert isinstance(raised.value, ValueError)


FAN_OUT = dot(
    """
    digraph fan_out {{
        start [shape=Mdiamond]
        fork [shape=component]
        left [type="{left}", writes="left.value=L"]
        right [type="{right}", writes="right.value=R"]
        join [shape=tripleoctagon]
        after [type="probe"]
        done [shape=Msquare]
        start -> fork
        fork -> left
        fork -> right
        left -> join
        right -> join
        join -> after -> done
    }}
    """
)


class WaitsForLeft:
    """The right branch's handler: records what it sees once the left branch has written."""

    def __init__(self, left_written: anyio.Event) -> None:
        self.left_written = left_written
        self.seen: dict[str, Any] = {}

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        with anyio.fail_after(5):
            await self.left_written.wait()
        self.seen = context.snapshot()
        return Outcome.success("right done", context_updates={"right.value": "R"})


class SignalsAfterWriting(Probe):
    """The left branch's handler: a Probe that signals once it has written."""

    def __init__(self, written: anyio.Event) -> None:
        super().__init__()
        self.written = written

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        outcome = await super().execute(node, context, graph, stage)
        context.apply_updates(outcome.context_updates)
        self.written.set()
        return outcome


class StallsOnce:
    """A handler that, on its first run, announces itself and waits to be cancelled."""

    def __init__(self) -> None:
        self.reached = anyio.Event()
        self.calls = 0

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        self.calls += 1
        if self.calls == 1:
            self.reached.set()
            await anyio.sleep_forever()
        return Outcome.success(f"{node.id} done")


class TestParallelIsolation:
    """§4.5: branches run on deep copies of the context; only their outcomes come back,
    through parallel.results, and each finished branch is recorded for resume."""

    async def test_branch_writes_are_invisible_to_a_sibling(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """What the left branch writes, in place or as updates, the right branch never sees."""
        written = anyio.Event()
        left, right = SignalsAfterWriting(written), WaitsForLeft(written)
        pipeline = load(
            FAN_OUT.format(left="left", right="right"),
            tmp_path,
            store,
            handlers={"left": left, "right": right, "probe": Probe()},
        )

        result = await pipeline.run()

        assert result.status == "success"
        assert left.ran == ["left"]
        assert right.seen["current_node"] == "right"
        assert "left.value" not in right.seen
        assert "left.direct" not in right.seen

    async def test_branch_writes_reach_the_parent_only_through_parallel_results(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """After the join, the context holds each branch's outcome and context_updates under
        parallel.results, and none of their keys at top level."""
        probe = Probe()
        pipeline = load(
            FAN_OUT.format(left="probe", right="probe"), tmp_path, store, handlers={"probe": probe}
        )

        result = await pipeline.run()

        after = dict(probe.seen)["after"]
        for key in ("left.value", "left.direct", "right.value", "right.direct"):
            assert key not in after
            assert key not in result.context
        updates = {r["id"]: r["context_updates"] for r in after["parallel.results"]}
        assert updates == {"left": {"left.value": "L"}, "right": {"right.value": "R"}}

    async def test_each_finished_branch_is_recorded_in_the_store(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Before the parallel node's checkpoint, Recorded turns of the parallel node hold
        every branch's outcome (branches that finish together may share a turn)."""
        pipeline = load(
            FAN_OUT.format(left="probe", right="probe"),
            tmp_path,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        state = SessionState(session_id=result.session_id)
        recorders: set[str] = set()
        for turn in await session_history(store, result.session_id):
            fields = decode(turn)
            if turn.type_id == CHECKPOINT and fields["node_id"] == "fork":
                break
            if turn.type_id == RECORDED and fields["kind"] == "branch":
                recorders.add(fields["node_id"])
            state.apply(turn)
        assert recorders == {"fork"}
        branches = state.recorded["fork"]["branch"]
        assert {b: data["outcome"] for b, data in branches.items()} == {
            "left": "success",
            "right": "success",
        }

    async def test_resume_after_a_crash_in_fan_out_skips_finished_branches(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A run interrupted while one branch is still running resumes by running only
        that branch again."""
        probe, stall = Probe(), StallsOnce()
        handlers = {"probe": probe, "stall": stall}
        pipeline = load(
            FAN_OUT.format(left="probe", right="stall"), tmp_path, store, handlers=handlers
        )
        left_finished = anyio.Event()

        def on_event(event: Event) -> None:
            if isinstance(event, ParallelBranchCompleted) and event.branch == "left":
                left_finished.set()

        async with anyio.create_task_group() as group:
            group.start_soon(functools.partial(pipeline.run, on_event=on_event))
            await left_finished.wait()
            await stall.reached.wait()
            group.cancel_scope.cancel()
        assert pipeline.session_id is not None

        result = await resume(pipeline.session_id, store=store, handlers=handlers)

        assert result.status == "success"
        assert probe.ran == ["left", "after"]
        assert stall.calls == 2
        outcomes = {r["id"]: r["outcome"] for r in result.context["parallel.results"]}
        assert outcomes == {"left": "success", "right": "success"}

    async def test_a_retried_parallel_node_runs_its_branches_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Recorded branch results spare a resume, not a retry: when first_success fails
        and the node has retries, its branches run again."""
        log = EventRecorder()
        pipeline = load(RETRIED_FAN_OUT, tmp_path, store)

        result = await pipeline.run(on_event=log)

        assert log.attempts("fork") == [1, 2]
        assert log.attempts("left") == [1, 1]
        assert result.status == "success"


RETRIED_FAN_OUT = dot(
    """
    digraph retried_fan_out {
        start [shape=Mdiamond]
        fork [shape=component, join_policy="first_success", max_retries=1]
        left [prompt="Left", sim_outcomes="fail,success"]
        right [prompt="Right", sim_outcomes="fail,success"]
        join [shape=tripleoctagon]
        done [shape=Msquare]
        start -> fork
        fork -> left
        fork -> right
        left -> join
        right -> join
        join -> done
    }
    """
)


class ExitProbe:
    """Replaces the exit handler: counts its runs and what ran last before each."""

    def __init__(self) -> None:
        self.last_stages: list[str] = []

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        self.last_stages.append(context.get_string("last_stage"))
        return Outcome.success("exit probed")


GATED = dot(
    """
    digraph gated {{
        start [shape=Mdiamond]
        build [prompt="Build", goal_gate=true, sim_outcomes="fail,success" {target}]
        report [prompt="Report"]
        review [prompt="Review"]
        done [shape=Msquare]
        start -> build
        build -> report [condition="outcome=fail"]
        build -> review [condition="outcome=success"]
        report -> done
        review -> done
    }}
    """
)


class TestExitAfterGoalGates:
    """§4.6: the exit handler runs only once the goal gates pass, and the exit node is the
    final checkpoint's current_node."""

    async def test_exit_handler_runs_once_after_the_gates_pass(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Arriving with an unsatisfied gate does not run the exit handler; arriving again
        after the gate succeeded runs it, once."""
        exit_probe = ExitProbe()
        pipeline = load(
            GATED.format(target=", retry_target=build"),
            tmp_path,
            store,
            handlers={"exit": exit_probe},
        )

        result = await pipeline.run()

        assert exit_probe.last_stages == ["review"]
        assert result.completed_nodes == ("start", "build", "report", "build", "review", "done")

    async def test_exit_is_the_final_checkpoint_current_node(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The last checkpoint, in the store and in checkpoint.json, is the exit node's."""
        pipeline = load(GATED.format(target=", retry_target=build"), tmp_path, store)

        result = await pipeline.run()

        checkpoints = await turns(store, result.session_id, CHECKPOINT)
        assert checkpoints[-1]["node_id"] == "done"
        assert checkpoints[-1]["next_node"] == ""
        checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert checkpoint["current_node"] == "done"
        assert checkpoint["completed_nodes"][-1] == "done"

    async def test_unsatisfied_gate_without_target_never_runs_the_exit_handler(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With no retry target anywhere the run fails at the exit, naming the gate."""
        exit_probe = ExitProbe()
        pipeline = load(GATED.format(target=""), tmp_path, store, handlers={"exit": exit_probe})

        result = await pipeline.run()

        assert exit_probe.last_stages == []
        assert result.status == "fail"
        assert "build" in result.failure_reason
        assert "done" not in result.completed_nodes


RESTARTING = dot(
    """
    digraph restarting {
        graph [goal="ship it"]
        start [shape=Mdiamond]
        setup [type="probe", writes="setup.count=1"]
        check [prompt="Check {{ ticket }}", sim_outcomes="fail,success"]
        done [shape=Msquare]
        start -> setup -> check
        check -> setup [condition="outcome=fail", loop_restart=true]
        check -> done [condition="outcome=success"]
    }
    """
)


class TestLoopRestart:
    """§4.7: loop_restart restarts in-process with a fresh context that keeps graph.* and the
    run variables, writing into a fresh restart-N/ directory."""

    async def test_restart_starts_a_fresh_context(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """After the restart, the restart target sees graph.* and variables, nothing else
        the first pass wrote."""
        probe = Probe()
        pipeline = load(
            RESTARTING, tmp_path, store, variables={"ticket": "T-7"}, handlers={"probe": probe}
        )

        result = await pipeline.run()

        assert result.status == "success"
        assert probe.ran == ["setup", "setup"]
        first, second = (seen for _, seen in probe.seen)
        assert "last_stage" not in first
        assert second["graph.goal"] == "ship it"
        assert second["ticket"] == "T-7"
        for key in (
            "setup.count",
            "setup.direct",
            "last_stage",
            "last_response",
            "internal.retry_count.check",
        ):
            assert key not in second, key

    async def test_restart_writes_into_restart_1(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The first pass's files stay where they were; the second pass's go to
        restart-1/, with its own checkpoint."""
        pipeline = load(
            RESTARTING, tmp_path, store, variables={"ticket": "T-7"}, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        run = tmp_path / "run"
        first = json.loads((run / "check" / "status.json").read_text())
        second = json.loads((run / "restart-1" / "check" / "status.json").read_text())
        assert (first["outcome"], second["outcome"]) == ("fail", "success")
        assert (run / "restart-1" / "check" / "prompt.md").read_text() == "Check T-7"
        checkpoint = json.loads((run / "restart-1" / "checkpoint.json").read_text())
        assert checkpoint["current_node"] == "done"
        assert result.logs_root == run / "restart-1"

    async def test_the_directory_left_behind_has_its_last_checkpoint(
        self, tmp_path: Path, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The first pass's checkpoint.json ends at the node whose edge restarted the run,
        however far behind the mirror's throttled writes were (here: never written)."""
        from orchestra.engine.runner import Runner

        forced = Runner._write_checkpoint_file

        def only_forced(self: Runner, *, force: bool = False) -> None:
            if force:
                forced(self, force=True)

        monkeypatch.setattr(Runner, "_write_checkpoint_file", only_forced)
        pipeline = load(
            RESTARTING, tmp_path, store, variables={"ticket": "T-7"}, handlers={"probe": Probe()}
        )
        await pipeline.run()

        left = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert left["current_node"] == "check"
        assert left["completed_nodes"] == ["start", "setup", "check"]


class TestCheckpointContextKey:
    """§4.8: checkpoint.json keeps the context under "context", as §5.3's save() writes."""

    async def test_checkpoint_file_keeps_the_context_under_context(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """checkpoint.json has §5.3's keys, the run's final context under "context", and
        no "context_values"."""
        pipeline = load(
            RETRYING.format(work='prompt="Work"'), tmp_path, store, variables={"ticket": "T-9"}
        )

        result = await pipeline.run()

        checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert {
            "timestamp",
            "current_node",
            "completed_nodes",
            "node_retries",
            "context",
            "logs",
        } <= set(checkpoint)
        assert "context_values" not in checkpoint
        assert checkpoint["context"] == result.context
        assert checkpoint["context"]["ticket"] == "T-9"
