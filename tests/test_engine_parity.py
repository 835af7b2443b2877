"""The spec's §11.12 cross-feature parity matrix and §11.13 integration smoke test.

Every run uses a store and a run directory under ``tmp_path``; LLM stages are answered by the
simulation backend (``sim_outcomes``) or by a scripted ``CodergenBackend``, never a network.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from pipelines import dot, load

from orchestra.dot import parse_dot
from orchestra.engine.context import Context
from orchestra.errors import ValidationError
from orchestra.events import Event, StageStarted
from orchestra.graph import Graph, Node
from orchestra.handlers.base import StageRun
from orchestra.interviewer.base import Option, QueueInterviewer
from orchestra.outcome import Outcome, StageStatus
from orchestra.pipeline import Pipeline, resume
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import RecordingSleep, ScriptedBackend
from orchestra.validation import Severity, validate


class Probe:
    """A custom handler that records the context each of its nodes sees, and succeeds with
    ``context_updates`` taken from the node's ``writes`` attribute (``key=value``)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, dict[str, Any]]] = []
        self.attrs: dict[str, Mapping[str, Any]] = {}

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        self.seen.append((node.id, context.snapshot()))
        self.attrs[node.id] = dict(node.attrs)
        key, _, value = str(node.attrs.get("writes", "")).partition("=")
        return Outcome.success(f"probed {node.id}", context_updates={key: value} if key else {})

    def context_at(self, node_id: str) -> dict[str, Any]:
        return next(seen for ran, seen in self.seen if ran == node_id)


class Stall:
    """A custom handler that, the first time it runs node ``stall_at``, announces itself and
    waits forever (so the test can interrupt the run mid-node); otherwise it succeeds."""

    def __init__(self, stall_at: str | None = None) -> None:
        self.stall_at = stall_at
        self.reached = anyio.Event()
        self.calls: list[str] = []

    async def execute(self, node: Node, context: Context, graph: Graph, stage: StageRun) -> Outcome:
        self.calls.append(node.id)
        if node.id == self.stall_at:
            self.stall_at = None
            self.reached.set()
            await anyio.sleep_forever()
        return Outcome.success(f"{node.id} done", context_updates={f"{node.id}.done": True})


def errors(source: str) -> list[tuple[str, str | None]]:
    """(rule, node id) of each error-severity diagnostic of ``source``."""
    return [
        (d.rule, d.node_id) for d in validate(parse_dot(source)) if d.severity is Severity.ERROR
    ]


BRANCHING = dot(
    """
    digraph branching {
        start [shape=Mdiamond]
        work [prompt="Work", sim_outcomes="{outcome}"]
        celebrate [prompt="Celebrate"]
        repair [prompt="Repair"]
        done [shape=Msquare]
        start -> work
        work -> celebrate [condition="outcome=success"]
        work -> repair [condition="outcome=fail"]
        celebrate -> done
        repair -> done
    }
    """
)

RESUMABLE = dot(
    """
    digraph resumable {
        graph [goal="finish after a crash"]
        start [shape=Mdiamond]
        first [type="stall"]
        second [type="stall"]
        third [prompt="Wrap up $goal"]
        done [shape=Msquare]
        start -> first -> second -> third -> done
    }
    """
)


class TestParityMatrix:
    """Spec §11.12: each cell of the cross-feature parity matrix is one test."""

    def test_parse_simple_linear_pipeline(self) -> None:
        """start -> A -> B -> done parses to four nodes and three edges, in order."""
        graph = parse_dot(
            dot(
                """
            digraph linear {
                start [shape=Mdiamond]
                A [prompt="Do A"]
                B [prompt="Do B"]
                done [shape=Msquare]
                start -> A -> B -> done
            }
            """
            )
        )
        assert list(graph.nodes) == ["start", "A", "B", "done"]
        assert [(e.source, e.target) for e in graph.edges] == [
            ("start", "A"),
            ("A", "B"),
            ("B", "done"),
        ]
        assert graph.start_node is not None
        assert graph.start_node.id == "start"
        assert graph.exit_node is not None
        assert graph.exit_node.id == "done"

    def test_parse_pipeline_with_graph_level_attributes(self) -> None:
        """goal and label written in a graph [...] block are the graph's attributes."""
        graph = parse_dot(
            dot(
                """
            digraph attributed {
                graph [goal="Ship the release", label="Release train"]
                start [shape=Mdiamond]
                done [shape=Msquare]
                start -> done
            }
            """
            )
        )
        assert graph.goal == "Ship the release"
        assert graph.label == "Release train"

    def test_parse_multi_line_node_attributes(self) -> None:
        """An attribute block spread over several lines gives the node every attribute."""
        graph = parse_dot(
            dot(
                """
            digraph multiline {
                start [shape=Mdiamond]
                plan [
                    shape=box,
                    prompt="Plan the work
            in two lines",
                    max_retries=2,
                    goal_gate=true
                ]
                done [shape=Msquare]
                start -> plan -> done
            }
            """
            )
        )
        plan = graph.nodes["plan"]
        assert plan.shape == "box"
        assert plan.prompt == "Plan the work\nin two lines"
        assert plan.max_retries == 2
        assert plan.goal_gate is True

    def test_validate_missing_start_node_is_error(self) -> None:
        """A graph without a start node has a start_node ERROR, and will not load."""
        source = dot(
            """
            digraph no_start {
                work [prompt="Work"]
                done [shape=Msquare]
                work -> done
            }
            """
        )
        assert ("start_node", None) in errors(source)
        with pytest.raises(ValidationError):
            Pipeline.load(source)

    def test_validate_missing_exit_node_is_error(self) -> None:
        """A graph without an exit node has a terminal_node ERROR, and will not load."""
        source = dot(
            """
            digraph no_exit {
                start [shape=Mdiamond]
                work [prompt="Work"]
                start -> work
            }
            """
        )
        assert ("terminal_node", None) in errors(source)
        with pytest.raises(ValidationError):
            Pipeline.load(source)

    def test_validate_orphan_node_is_error(self) -> None:
        """An orphan node is an ERROR, not the matrix's warning: DESIGN §4.4 follows §7.2's
        rule table, where reachability is error-severity, so an orphan never loads."""
        source = dot(
            """
            digraph orphan {
                start [shape=Mdiamond]
                work [prompt="Work"]
                orphan [prompt="Nobody routes here"]
                done [shape=Msquare]
                start -> work -> done
            }
            """
        )
        assert errors(source) == [("reachability", "orphan")]
        with pytest.raises(ValidationError, match="orphan"):
            Pipeline.load(source)

    async def test_execute_linear_three_node_pipeline_end_to_end(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """start -> work -> done runs each node once, in order, and succeeds."""
        backend = ScriptedBackend({"work": ["the work is done"]})
        pipeline = load(
            dot(
                """
            digraph three {
                start [shape=Mdiamond]
                work [prompt="Do the work"]
                done [shape=Msquare]
                start -> work -> done
            }
            """
            ),
            tmp_path,
            store,
            backend=backend,
        )
        started: list[str] = []

        def on_event(event: Event) -> None:
            if isinstance(event, StageStarted):
                started.append(str(event.node_id))

        result = await pipeline.run(on_event=on_event)

        assert result.status == "success"
        assert result.completed_nodes == ("start", "work", "done")
        assert started == ["start", "work", "done"]
        assert backend.prompts == [("work", "Do the work")]
        assert (tmp_path / "run" / "work" / "response.md").read_text() == "the work is done"

    @pytest.mark.parametrize(
        ("outcome", "taken", "skipped"),
        [("success", "celebrate", "repair"), ("fail", "repair", "celebrate")],
    )
    async def test_execute_with_conditional_branching_success_and_fail_paths(
        self, tmp_path: Path, store: EmbeddedStore, outcome: str, taken: str, skipped: str
    ) -> None:
        """outcome=success and outcome=fail edges send the run down the matching path."""
        pipeline = load(BRANCHING.replace("{outcome}", outcome), tmp_path, store)

        result = await pipeline.run()

        assert result.status == "success"
        assert result.completed_nodes == ("start", "work", taken, "done")
        assert skipped not in result.completed_nodes

    async def test_execute_with_retry_on_failure_max_retries_2(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A node with max_retries=2 that fails twice runs a third time and succeeds."""
        pipeline = load(
            dot(
                """
            digraph retrying {
                start [shape=Mdiamond]
                flaky [prompt="Flaky", max_retries=2, sim_outcomes="fail,fail,success"]
                done [shape=Msquare]
                start -> flaky -> done
            }
            """
            ),
            tmp_path,
            store,
        )
        attempts: list[int] = []

        def on_event(event: Event) -> None:
            if isinstance(event, StageStarted) and event.node_id == "flaky":
                attempts.append(event.attempt)

        result = await pipeline.run(on_event=on_event)

        assert result.status == "success"
        assert attempts == [1, 2, 3]
        assert result.node_outcomes["flaky"]["outcome"] == "success"
        sleep = pipeline.sleep
        assert isinstance(sleep, RecordingSleep)
        assert len(sleep.delays) == 2

    async def test_goal_gate_blocks_exit_when_unsatisfied(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Reaching the exit with a failed goal gate jumps to its retry_target instead."""
        pipeline = load(
            dot(
                """
            digraph gated {
                start [shape=Mdiamond]
                build [prompt="Build", goal_gate=true, retry_target=build,
                       sim_outcomes="fail,success"]
                report [prompt="Report the failure"]
                done [shape=Msquare]
                start -> build
                build -> report [condition="outcome=fail"]
                build -> done [condition="outcome=success"]
                report -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.status == "success"
        assert result.completed_nodes == ("start", "build", "report", "build", "done")

    async def test_goal_gate_allows_exit_when_all_satisfied(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Goal gates that ended SUCCESS or PARTIAL_SUCCESS let the run exit."""
        pipeline = load(
            dot(
                """
            digraph satisfied {
                start [shape=Mdiamond]
                build [prompt="Build", goal_gate=true, sim_outcomes="success"]
                test [prompt="Test", goal_gate=true, sim_outcomes="partial_success"]
                done [shape=Msquare]
                start -> build -> test -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.status == "success"
        assert result.completed_nodes == ("start", "build", "test", "done")

    async def test_wait_human_presents_choices_and_routes_on_selection(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The gate offers its outgoing edge labels and follows the one the human picks."""
        interviewer = QueueInterviewer(["N"])
        pipeline = load(
            dot(
                """
            digraph approval {
                start [shape=Mdiamond]
                review [shape=hexagon, label="Ship this release?"]
                ship [prompt="Ship"]
                fix [prompt="Fix"]
                done [shape=Msquare]
                start -> review
                review -> ship [label="[Y] Yes, ship it"]
                review -> fix [label="[N] No, fix it"]
                ship -> done
                fix -> done
            }
            """
            ),
            tmp_path,
            store,
            interviewer=interviewer,
        )

        result = await pipeline.run()

        (question,) = interviewer.asked
        assert question.text == "Ship this release?"
        assert question.stage == "review"
        assert question.options == (Option("Y", "[Y] Yes, ship it"), Option("N", "[N] No, fix it"))
        assert result.completed_nodes == ("start", "review", "fix", "done")
        assert result.context["human.gate.selected"] == "N"
        assert result.context["human.gate.label"] == "[N] No, fix it"

    async def test_edge_selection_condition_match_wins_over_weight(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A matching condition edge is taken over a heavier unconditional one."""
        pipeline = load(
            dot(
                """
            digraph condition_first {
                start [shape=Mdiamond]
                work [prompt="Work"]
                heavy [prompt="Heavy"]
                matched [prompt="Matched"]
                done [shape=Msquare]
                start -> work
                work -> heavy [weight=100]
                work -> matched [condition="outcome=success"]
                heavy -> done
                matched -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "work", "matched", "done")

    async def test_edge_selection_weight_breaks_ties_for_unconditional_edges(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Among unconditional edges the heaviest wins, even against lexical order."""
        pipeline = load(
            dot(
                """
            digraph by_weight {
                start [shape=Mdiamond]
                work [prompt="Work"]
                alpha [prompt="Alpha"]
                zulu [prompt="Zulu"]
                done [shape=Msquare]
                start -> work
                work -> alpha [weight=1]
                work -> zulu [weight=5]
                alpha -> done
                zulu -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "work", "zulu", "done")

    async def test_edge_selection_lexical_tiebreak_as_final_fallback(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Equal-weight unconditional edges go to the lexically first target, whatever the
        order they were written in."""
        pipeline = load(
            dot(
                """
            digraph lexical {
                start [shape=Mdiamond]
                work [prompt="Work"]
                beta [prompt="Beta"]
                alpha [prompt="Alpha"]
                done [shape=Msquare]
                start -> work
                work -> beta
                work -> alpha
                beta -> done
                alpha -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "work", "alpha", "done")

    async def test_context_updates_from_one_node_visible_to_next(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A key in one node's context_updates is in the context the next node reads."""
        probe = Probe()
        pipeline = load(
            dot(
                """
            digraph handoff {
                start [shape=Mdiamond]
                writer [type="probe", writes="context.plan=three steps"]
                reader [type="probe"]
                done [shape=Msquare]
                start -> writer -> reader -> done
            }
            """
            ),
            tmp_path,
            store,
            handlers={"probe": probe},
        )

        result = await pipeline.run()

        assert "context.plan" not in probe.context_at("writer")
        assert probe.context_at("reader")["context.plan"] == "three steps"
        assert result.context["context.plan"] == "three steps"

    async def test_checkpoint_save_and_resume_produces_same_result(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A run interrupted mid-node and resumed from its checkpoint ends as an
        uninterrupted run of the same pipeline does."""
        straight = await load(
            RESUMABLE, tmp_path, store, run_dir="straight", handlers={"stall": Stall()}
        ).run()
        stall = Stall(stall_at="second")
        pipeline = load(
            RESUMABLE, tmp_path, store, run_dir="interrupted", handlers={"stall": stall}
        )
        async with anyio.create_task_group() as group:
            group.start_soon(pipeline.run)
            await stall.reached.wait()
            group.cancel_scope.cancel()
        assert pipeline.session_id is not None

        resumed = await resume(pipeline.session_id, store=store, handlers={"stall": stall})

        assert stall.calls == ["first", "second", "second"]
        assert resumed.status == straight.status == "success"
        assert resumed.completed_nodes == straight.completed_nodes
        assert resumed.context == straight.context
        checkpoint = json.loads((tmp_path / "interrupted" / "checkpoint.json").read_text())
        assert checkpoint["current_node"] == "done"
        assert checkpoint["completed_nodes"] == list(straight.completed_nodes)

    async def test_stylesheet_applies_model_override_by_shape(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A shape selector sets llm_model on every node of that shape the backend runs,
        and on no node of another shape."""
        backend = ScriptedBackend()
        pipeline = load(
            dot(
                """
            digraph styled {
                graph [model_stylesheet="box { llm_model: box-model }"]
                start [shape=Mdiamond]
                plan [prompt="Plan"]
                build [shape=box, prompt="Build"]
                ask [shape=hexagon, label="Continue?"]
                done [shape=Msquare]
                start -> plan -> build -> ask -> done
            }
            """
            ),
            tmp_path,
            store,
            backend=backend,
        )

        await pipeline.run()

        assert {node_id: node.llm_model for node_id, node in backend.nodes.items()} == {
            "plan": "box-model",
            "build": "box-model",
        }
        assert "llm_model" not in pipeline.graph.nodes["ask"].attrs

    async def test_prompt_variable_expansion_goal_works(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """$goal in a prompt reaches the backend and prompt.md as the graph's goal."""
        backend = ScriptedBackend()
        pipeline = load(
            dot(
                """
            digraph expanded {
                graph [goal="a faster parser"]
                start [shape=Mdiamond]
                plan [prompt="Plan $goal, then check $goal"]
                done [shape=Msquare]
                start -> plan -> done
            }
            """
            ),
            tmp_path,
            store,
            backend=backend,
        )

        await pipeline.run()

        expected = "Plan a faster parser, then check a faster parser"
        assert backend.prompts == [("plan", expected)]
        assert (tmp_path / "run" / "plan" / "prompt.md").read_text() == expected

    async def test_parallel_fan_out_and_fan_in_complete_correctly(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Both branches run, their results reach the fan-in, and the run continues there."""
        pipeline = load(
            dot(
                """
            digraph fan {
                start [shape=Mdiamond]
                fork [shape=component]
                left [prompt="Left"]
                right [prompt="Right", sim_outcomes="partial_success"]
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
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.status == "success"
        assert result.completed_nodes == ("start", "fork", "join", "done")
        results = {r["id"]: r["outcome"] for r in result.context["parallel.results"]}
        assert results == {"left": "success", "right": "partial_success"}
        assert result.context["parallel.fan_in.best_id"] == "left"
        assert result.context["parallel.fan_in.best_outcome"] == "success"
        for branch in ("left", "right"):
            assert (tmp_path / "run" / branch / "response.md").is_file()

    async def test_custom_handler_registration_and_execution_works(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A handler registered under a type string runs the nodes of that type, sees their
        own attributes, and its outcome drives the run."""
        probe = Probe()
        pipeline = load(
            dot(
                """
            digraph custom {
                start [shape=Mdiamond]
                mine [type="my_custom_type", shape=box, custom_attr="value",
                      writes="custom.ran=yes"]
                done [shape=Msquare]
                start -> mine -> done
            }
            """
            ),
            tmp_path,
            store,
            handlers={"my_custom_type": probe},
        )

        result = await pipeline.run()

        assert [node_id for node_id, _ in probe.seen] == ["mine"]
        assert probe.attrs["mine"]["custom_attr"] == "value"
        assert result.context["custom.ran"] == "yes"
        assert result.status == "success"

    async def test_pipeline_with_10_plus_nodes_completes(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A twelve-stage pipeline (fourteen nodes) runs every node once and succeeds."""
        stages = [f"stage{n:02d}" for n in range(1, 13)]
        declarations = "\n".join(f'{s} [prompt="Do {s}"]' for s in stages)
        chain = " -> ".join(["start", *stages, "done"])
        pipeline = load(
            "digraph long {\nstart [shape=Mdiamond]\ndone [shape=Msquare]\n"
            f"{declarations}\n{chain}\n}}\n",
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.status == "success"
        assert result.completed_nodes == ("start", *stages, "done")
        assert pipeline.diagnostics == []


SMOKE = dot(
    """
    digraph test_pipeline {
        graph [goal="Create a hello world Python script"]

        start       [shape=Mdiamond]
        plan        [shape=box, prompt="Plan how to create a hello world script for: $goal"]
        implement   [shape=box, prompt="Write the code based on the plan", goal_gate=true]
        review      [shape=box, prompt="Review the code for correctness"]
        done        [shape=Msquare]

        start -> plan
        plan -> implement
        implement -> review [condition="outcome=success"]
        implement -> plan   [condition="outcome=fail", label="Retry"]
        review -> done      [condition="outcome=success"]
        review -> implement [condition="outcome=fail", label="Fix"]
    }
    """
)


def smoke_backend() -> ScriptedBackend:
    """What a cooperative LLM would answer each stage of the smoke pipeline."""
    return ScriptedBackend(
        {
            "plan": ["1. Write hello.py printing 'Hello, world!'\n2. Run it."],
            "implement": ["print('Hello, world!')\n"],
            "review": ["The script is correct."],
        }
    )


class TestSmoke:
    """Spec §11.13: plan -> implement -> review -> done, with a scripted LLM callback."""

    def test_parse(self) -> None:
        """Step 1: the goal, five nodes and six edges are parsed."""
        graph = parse_dot(SMOKE)
        assert graph.goal == "Create a hello world Python script"
        assert len(graph.nodes) == 5
        assert len(graph.edges) == 6

    def test_validate(self) -> None:
        """Step 2: linting finds no error-severity diagnostic."""
        assert [d for d in validate(parse_dot(SMOKE)) if d.severity is Severity.ERROR] == []

    async def test_execute(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """Steps 3-4: the run succeeds through implement, each stage asked its own prompt."""
        backend = smoke_backend()

        result = await load(SMOKE, tmp_path, store, backend=backend).run()

        assert result.status == "success"
        assert "implement" in result.completed_nodes
        assert result.completed_nodes == ("start", "plan", "implement", "review", "done")
        assert backend.prompts == [
            (
                "plan",
                "Plan how to create a hello world script for: Create a hello world Python script",
            ),
            ("implement", "Write the code based on the plan"),
            ("review", "Review the code for correctness"),
        ]

    async def test_artifacts(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """Step 4: plan, implement and review each leave prompt.md, response.md and
        status.json in their stage directory."""
        result = await load(SMOKE, tmp_path, store, backend=smoke_backend()).run()

        for node_id in ("plan", "implement", "review"):
            stage = result.logs_root / node_id
            for name in ("prompt.md", "response.md", "status.json"):
                assert (stage / name).is_file(), f"{node_id}/{name} is missing"
        implement = result.logs_root / "implement"
        assert (implement / "response.md").read_text() == "print('Hello, world!')\n"
        status = json.loads((implement / "status.json").read_text())
        assert status["outcome"] == "success"

    async def test_goal_gate(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """Step 5: implement is a goal gate and its outcome satisfies it."""
        pipeline = load(SMOKE, tmp_path, store, backend=smoke_backend())

        result = await pipeline.run()

        assert pipeline.graph.nodes["implement"].goal_gate
        gate_status = StageStatus.parse(result.node_outcomes["implement"]["outcome"])
        assert gate_status.is_success

    async def test_checkpoint(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """Step 6: checkpoint.json ends at done, with plan, implement and review completed."""
        result = await load(SMOKE, tmp_path, store, backend=smoke_backend()).run()

        checkpoint = json.loads((result.logs_root / "checkpoint.json").read_text())
        assert checkpoint["current_node"] == "done"
        for node_id in ("plan", "implement", "review"):
            assert node_id in checkpoint["completed_nodes"]
