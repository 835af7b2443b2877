"""The engine's behaviour beyond the parity matrix: retry policies and backoff, partial
success, auto status, timeouts, max_visits, labels, handler errors, built-in context keys,
events, status files (Appendix C), the tool and human handlers, and resume."""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
import pytest
from pipelines import delays, dot, load, turns

from orchestra.backends.simulation import SimulationBackend
from orchestra.dot import parse_dot
from orchestra.engine.context import Context
from orchestra.engine.retry import PRESETS, Backoff, policy_for
from orchestra.engine.routing import accelerator_key, normalize_label
from orchestra.engine.session import (
    CHECKPOINT,
    SESSION_ENDED,
    decode,
    load_session,
    session_history,
)
from orchestra.errors import RunDirectoryError, StoreError
from orchestra.events import (
    CheckpointSaved,
    Event,
    InterviewTimeout,
    PipelineCompleted,
    PipelineFailed,
    PipelineStarted,
    StageCompleted,
    StageFailed,
    StageStarted,
)
from orchestra.graph import Graph, Node
from orchestra.handlers.base import BranchResult, StageRun
from orchestra.handlers.human import WaitForHumanHandler
from orchestra.interviewer.base import Answer, AnswerValue, QueueInterviewer
from orchestra.outcome import Outcome, StageStatus
from orchestra.pipeline import Pipeline, ResumeRefused, resume
from orchestra.store.base import TurnRecord
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder, ScriptedBackend


class Probe:
    """A custom handler that records the context each node sees and returns the outcome
    given for the node in ``outcomes`` (by default SUCCESS)."""

    def __init__(self, outcomes: Mapping[str, Outcome | Exception | None] | None = None) -> None:
        self.outcomes = dict(outcomes or {})
        self.seen: list[tuple[str, dict[str, Any]]] = []

    async def execute(
        self, node: Node, context: Context, graph: Graph, stage: StageRun
    ) -> Outcome | None:
        self.seen.append((node.id, context.snapshot()))
        outcome = self.outcomes.get(node.id, Outcome.success(f"probed {node.id}"))
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @property
    def ran(self) -> list[str]:
        return [node_id for node_id, _ in self.seen]

    def context_at(self, node_id: str) -> dict[str, Any]:
        return next(seen for ran, seen in self.seen if ran == node_id)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run tool commands from ``tmp_path``, so nothing they do lands in the repository."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def single(node: str, edges: str = "", extra: str = "") -> str:
    """start -> work -> next -> done with ``work`` declared as ``node``, plus a
    ``recover`` node, and ``edges`` and ``extra`` statements."""
    return dot(
        f"""
        digraph single {{
            graph [goal="keep the lights on"]
            start [shape=Mdiamond]
            work [{node}]
            next [type="probe"]
            recover [type="probe"]
            done [shape=Msquare]
            start -> work -> next -> done
            work -> recover [condition="outcome=fail"]
            recover -> done
            {edges}
            {extra}
        }}
        """
    )


def tool(command: str, edges: str = "", extra: str = "") -> str:
    """The ``single`` pipeline with ``work`` a tool running ``command`` (escaped for DOT)."""
    escaped = command.replace("\\", "\\\\").replace('"', '\\"')
    return single(f'shape=parallelogram, tool_command="{escaped}"', edges, extra)


def writes_status(status: Mapping[str, Any] | str) -> str:
    """A shell command writing ``status`` (JSON text as given) to the stage's status.json."""
    text = status if isinstance(status, str) else json.dumps(status)
    return f"printf '%s' '{text}' > \"$ATTRACTOR_STAGE_DIR/status.json\""


class TestBackoff:
    """§3.6: delay_for_attempt grows by the factor from the initial delay, is capped, and
    jitter scales it by a uniform 0.5-1.5."""

    def test_delays_grow_by_the_factor(self) -> None:
        """Attempt n waits initial * factor^(n-1)."""
        backoff = Backoff(initial_delay=0.2, factor=2.0, jitter=False)
        assert [backoff.delay_for_attempt(n) for n in range(1, 6)] == pytest.approx(
            [0.2, 0.4, 0.8, 1.6, 3.2]
        )

    def test_delay_is_capped_at_max_delay_before_jitter(self) -> None:
        """Without jitter no delay exceeds max_delay, however many attempts came before."""
        backoff = Backoff(initial_delay=1.0, factor=10.0, max_delay=60.0, jitter=False)
        assert [backoff.delay_for_attempt(n) for n in (1, 2, 3, 9)] == [1.0, 10.0, 60.0, 60.0]

    @pytest.mark.parametrize("rand", [0.0, 0.5, 0.999])
    def test_jitter_applies_after_the_cap(self, rand: float) -> None:
        """Spec §3.6 caps the delay at max_delay, then jitters it: a capped delay lands in
        [0.5, 1.5) x max_delay, so jitter still spreads retries that all hit the cap."""
        backoff = Backoff(initial_delay=1.0, factor=10.0, max_delay=60.0)
        assert backoff.delay_for_attempt(9, rand=lambda: rand) == pytest.approx(60.0 * (0.5 + rand))

    @pytest.mark.parametrize(("rand", "scale"), [(0.0, 0.5), (0.5, 1.0), (0.999, 1.499)])
    def test_jitter_scales_by_half_to_one_and_a_half(self, rand: float, scale: float) -> None:
        """With jitter the delay is multiplied by 0.5 + rand(), rand() in [0, 1)."""
        backoff = Backoff(initial_delay=0.4, factor=2.0)
        assert backoff.delay_for_attempt(2, rand=lambda: rand) == pytest.approx(0.8 * scale)

    @pytest.mark.parametrize(
        ("name", "attempts", "expected"),
        [
            ("none", 1, []),
            ("standard", 5, [0.2, 0.4, 0.8, 1.6, 3.2]),
            ("aggressive", 5, [0.5, 1.0, 2.0, 4.0, 8.0]),
            ("linear", 3, [0.5, 0.5, 0.5]),
            ("patient", 3, [2.0, 6.0, 18.0]),
        ],
    )
    def test_presets_match_the_spec_table(
        self, name: str, attempts: int, expected: list[float]
    ) -> None:
        """Each §3.6 preset has the table's max attempts and delays (jitter at its midpoint)."""
        preset = PRESETS[name]
        assert preset.max_attempts == attempts
        midpoint = [
            preset.backoff.delay_for_attempt(n, rand=lambda: 0.5)
            for n in range(1, len(expected) + 1)
        ]
        assert midpoint == pytest.approx(expected)


def retry_node(attributes: str, graph: str = "") -> tuple[Node, Graph]:
    parsed = parse_dot(
        dot(
            f"""
        digraph policies {{
            {graph}
            start [shape=Mdiamond]
            work [prompt="Work", {attributes}]
            done [shape=Msquare]
            start -> work -> done
        }}
        """
        )
    )
    return parsed.nodes["work"], parsed


class TestRetryPolicy:
    """§3.5-3.6: max_retries, default_max_retries and the retry_policy attribute."""

    def test_no_retries_by_default(self) -> None:
        """A node with nothing set runs once."""
        node, graph = retry_node('label="Work"')
        assert policy_for(node, graph).max_attempts == 1

    def test_graph_default_max_retries_is_inherited(self) -> None:
        """A node without max_retries takes the graph's default_max_retries."""
        node, graph = retry_node('label="Work"', graph="graph [default_max_retries=3]")
        assert policy_for(node, graph).max_attempts == 4

    def test_node_max_retries_wins_over_the_graph_default(self) -> None:
        """The node's own max_retries beats the graph's default_max_retries."""
        node, graph = retry_node("max_retries=1", graph="graph [default_max_retries=3]")
        assert policy_for(node, graph).max_attempts == 2

    def test_retry_policy_preset_gives_its_attempts_and_backoff(self) -> None:
        """retry_policy=linear alone means the preset: three attempts, 0.5 s apart."""
        node, graph = retry_node('retry_policy="linear"')
        assert policy_for(node, graph) == PRESETS["linear"]

    def test_max_retries_overrides_the_preset_attempts(self) -> None:
        """max_retries with a preset keeps the preset's backoff but its own attempt count."""
        node, graph = retry_node('retry_policy="patient", max_retries=1')
        policy = policy_for(node, graph)
        assert policy.max_attempts == 2
        assert policy.backoff == PRESETS["patient"].backoff

    async def test_retry_policy_drives_a_run(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A failing node with retry_policy=linear runs three times, waiting 0.5 s (with
        jitter) before each retry."""
        pipeline = load(
            single('prompt="Work", retry_policy="linear", sim_outcomes="fail"'),
            tmp_path,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "work", "recover", "done")
        assert len(delays(pipeline)) == 2
        assert all(0.25 <= delay < 0.75 for delay in delays(pipeline))


class TestAllowPartial:
    """§3.5: allow_partial turns RETRY exhaustion into PARTIAL_SUCCESS instead of FAIL."""

    async def test_exhausted_retries_with_allow_partial_are_partial_success(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The node ends PARTIAL_SUCCESS and the run goes on along its success path."""
        pipeline = load(
            single(
                'prompt="Work", max_retries=1, allow_partial=true, '
                'goal_gate=true, sim_outcomes="retry"'
            ),
            tmp_path,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "partial_success"
        assert result.completed_nodes == ("start", "work", "next", "done")
        assert result.status == "success"

    async def test_exhausted_retries_without_allow_partial_fail(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Without allow_partial the same node ends FAIL and takes its fail edge."""
        pipeline = load(
            single('prompt="Work", max_retries=1, sim_outcomes="retry"'),
            tmp_path,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "fail"
        assert result.completed_nodes == ("start", "work", "recover", "done")


class TestAutoStatus:
    """Appendix C: a handler that writes no status is SUCCESS only under auto_status=true."""

    async def test_no_status_with_auto_status_is_success(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The engine synthesises SUCCESS with the auto-status note."""
        pipeline = load(
            single('type="silent", auto_status=true'),
            tmp_path,
            store,
            handlers={"probe": Probe(), "silent": Probe({"work": None})},
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "success"
        assert result.node_outcomes["work"]["notes"] == (
            "auto-status: handler completed without writing status"
        )
        assert "next" in result.completed_nodes

    async def test_no_status_without_auto_status_is_fail(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Without auto_status the node fails, and the reason points at auto_status."""
        pipeline = load(
            single('type="silent"'),
            tmp_path,
            store,
            handlers={"probe": Probe(), "silent": Probe({"work": None})},
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "fail"
        assert "auto_status" in result.node_outcomes["work"]["failure_reason"]
        assert "recover" in result.completed_nodes


class TestNodeTimeout:
    """A node's timeout bounds its handler; the overrun is a FAIL."""

    async def test_tool_over_its_timeout_fails_quickly(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """`sleep 5` with timeout=200ms fails as timed out, well before five seconds."""
        pipeline = load(
            single('shape=parallelogram, tool_command="sleep 5", timeout="200ms"'),
            in_tmp,
            store,
            handlers={"probe": Probe()},
        )
        began = time.monotonic()

        result = await pipeline.run()

        assert time.monotonic() - began < 3.0
        work = result.node_outcomes["work"]
        assert work["outcome"] == "fail"
        assert "timed out" in work["failure_reason"]
        assert "recover" in result.completed_nodes
        assert (in_tmp / "run" / "work" / "tool_output.txt").is_file()


class TestMaxVisits:
    """Orchestra's max_visits: an edge is eligible at most N times per run."""

    async def test_edge_stops_being_taken_after_max_visits(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A heavy loop edge with max_visits=2 is taken twice; then the lighter exit edge."""
        probe = Probe()
        pipeline = load(
            dot(
                """
            digraph looping {
                start [shape=Mdiamond]
                draft [type="probe"]
                critique [type="probe"]
                done [shape=Msquare]
                start -> draft -> critique
                critique -> draft [weight=10, max_visits=2]
                critique -> done
            }
            """
            ),
            tmp_path,
            store,
            handlers={"probe": probe},
        )

        result = await pipeline.run()

        assert probe.ran == ["draft", "critique"] * 3
        assert result.status == "success"


class TestLabels:
    """§3.3 and §4.6: label normalisation and accelerator keys."""

    @pytest.mark.parametrize(
        "label",
        ["[Y] Yes, deploy", "Y) Yes, deploy", "Y - Yes, deploy", "  yes, DEPLOY  ", "Yes, deploy"],
    )
    def test_normalize_label_strips_accelerators_case_and_space(self, label: str) -> None:
        """Every accelerator form, any case and padding normalise to the same text."""
        assert normalize_label(label) == "yes, deploy"

    @pytest.mark.parametrize(
        ("label", "key"),
        [
            ("[Y] Yes, deploy", "Y"),
            ("n) No", "N"),
            ("R - Retry", "R"),
            ("Skip for now", "S"),
            ("[a] abort", "A"),
        ],
    )
    def test_accelerator_key(self, label: str, key: str) -> None:
        """[K], K) and K - prefixes give K; otherwise the first character; upper-cased."""
        assert accelerator_key(label) == key

    async def test_preferred_label_matches_an_edge_after_normalisation(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A preferred label "deploy" selects the edge labelled "[D] Deploy" over the
        lexically first one."""
        probe = Probe()
        pipeline = load(
            dot(
                """
            digraph labelled {
                start [shape=Mdiamond]
                work [prompt="Work", sim_outcomes="success: DEPLOY"]
                abort [type="probe"]
                ship [type="probe"]
                done [shape=Msquare]
                start -> work
                work -> abort [label="[A] Abort"]
                work -> ship [label="[D] Deploy"]
                abort -> done
                ship -> done
            }
            """
            ),
            tmp_path,
            store,
            handlers={"probe": probe},
        )

        await pipeline.run()

        assert probe.ran == ["ship"]

    async def test_suggested_next_ids_select_an_unconditional_edge(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With no label match, a suggested next id picks its edge over lexical order."""
        probe = Probe({"work": Outcome.success(suggested_next_ids=("zeta",))})
        pipeline = load(
            dot(
                """
            digraph suggested {
                start [shape=Mdiamond]
                work [type="probe"]
                alpha [type="probe"]
                zeta [type="probe"]
                done [shape=Msquare]
                start -> work
                work -> alpha
                work -> zeta
                alpha -> done
                zeta -> done
            }
            """
            ),
            tmp_path,
            store,
            handlers={"probe": probe},
        )

        await pipeline.run()

        assert probe.ran == ["work", "zeta"]


class TestHandlerExceptions:
    """§4.12: an exception escaping a handler becomes a FAIL outcome, not a crash."""

    async def test_custom_handler_exception_is_a_fail(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The FAIL names the exception and the run follows the node's fail edge."""
        handler = Probe({"work": RuntimeError("disk on fire")})
        pipeline = load(
            single('type="broken"'), tmp_path, store, handlers={"probe": Probe(), "broken": handler}
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["failure_reason"] == "RuntimeError: disk on fire"
        assert result.completed_nodes == ("start", "work", "recover", "done")

    async def test_backend_exception_is_a_fail(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A CodergenBackend that raises fails its stage the same way."""
        backend = ScriptedBackend({"work": [ConnectionError("provider unreachable")]})
        pipeline = load(
            single('prompt="Work"'), tmp_path, store, backend=backend, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "fail"
        assert "provider unreachable" in result.node_outcomes["work"]["failure_reason"]
        assert "recover" in result.completed_nodes


class TestBuiltInContextKeys:
    """§5.1: the keys the engine and handlers set in the context."""

    async def test_keys_after_a_codergen_stage(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """The next node sees outcome, preferred_label, graph.goal, its own current_node,
        last_stage, last_response (truncated to 200 chars) and the retry counter."""
        response = "x" * 500
        probe = Probe()
        backend = ScriptedBackend({"work": [response]})
        pipeline = load(
            single('prompt="Work"'), tmp_path, store, backend=backend, handlers={"probe": probe}
        )

        await pipeline.run()

        seen = probe.context_at("next")
        assert seen["outcome"] == "success"
        assert seen["preferred_label"] == ""
        assert seen["graph.goal"] == "keep the lights on"
        assert seen["current_node"] == "next"
        assert seen["last_stage"] == "work"
        assert seen["last_response"] == response[:200]
        assert seen["internal.retry_count.work"] == 0

    async def test_preferred_label_and_outcome_follow_the_last_stage(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A PARTIAL_SUCCESS with a preferred label lands in outcome and preferred_label."""
        probe = Probe()
        backend = ScriptedBackend(
            {
                "work": [
                    Outcome(StageStatus.PARTIAL_SUCCESS, preferred_label="Ship anyway"),
                ]
            }
        )
        pipeline = load(
            single('prompt="Work"'), tmp_path, store, backend=backend, handlers={"probe": probe}
        )

        await pipeline.run()

        seen = probe.context_at("next")
        assert (seen["outcome"], seen["preferred_label"]) == ("partial_success", "Ship anyway")

    async def test_retry_count_counts_the_retries(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """internal.retry_count.<id> is the number of retries the node used."""
        probe = Probe()
        pipeline = load(
            single('prompt="Work", max_retries=2, sim_outcomes="fail"'),
            tmp_path,
            store,
            handlers={"probe": probe},
        )

        await pipeline.run()

        assert probe.context_at("recover")["internal.retry_count.work"] == 2

    async def test_retry_count_is_reset_when_the_node_succeeds(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A node that retried and then succeeded has its counter reset, in the context and
        in the checkpoint's node_retries."""
        probe = Probe()
        pipeline = load(
            single('prompt="Work", max_retries=2, sim_outcomes="retry,success"'),
            tmp_path,
            store,
            handlers={"probe": probe},
        )

        await pipeline.run()

        assert probe.context_at("next")["internal.retry_count.work"] == 0
        checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert checkpoint["node_retries"].get("work", 0) == 0


LINEAR = single('prompt="Work"')


class TestEvents:
    """§9.6: events reach on_event callbacks and pipeline.events() alike."""

    async def test_callback_and_stream_see_the_same_events(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Run beside an events() consumer: both get every event, in the same order, from
        PipelineStarted to PipelineCompleted, each with the session id."""
        log = EventRecorder()
        streamed: list[Event] = []
        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})

        async def consume() -> None:
            async for event in pipeline.events():
                streamed.append(event)

        async with anyio.create_task_group() as group:
            group.start_soon(consume)
            result = await pipeline.run(on_event=log)

        assert streamed == log.events
        assert isinstance(streamed[0], PipelineStarted)
        assert isinstance(streamed[-1], PipelineCompleted)
        assert {e.session_id for e in streamed} == {result.session_id}
        assert [e.node_id for e in log.of(StageCompleted)] == ["start", "work", "next", "done"]
        assert [e.node_id for e in log.of(CheckpointSaved)] == ["start", "work", "next", "done"]

    async def test_async_callback_is_awaited(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A coroutine callback is awaited for each event before the run goes on."""
        seen: list[str] = []

        async def on_event(event: Event) -> None:
            await anyio.lowlevel.checkpoint()
            seen.append(type(event).__name__)

        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})

        await pipeline.run(on_event=on_event)

        assert seen[0] == "PipelineStarted"
        assert seen[-1] == "PipelineCompleted"

    async def test_failed_stage_emits_stage_failed_and_pipeline_failed(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Each failed attempt is a StageFailed saying whether it will retry; a run that
        fails ends with PipelineFailed carrying the reason."""
        log = EventRecorder()
        pipeline = load(
            dot(
                """
            digraph failing {
                start [shape=Mdiamond]
                work [prompt="Work", max_retries=1, sim_outcomes="fail"]
                done [shape=Msquare]
                start -> work -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        await pipeline.run(on_event=log)

        assert [e.will_retry for e in log.of(StageFailed, "work")] == [True, False]
        last = log.events[-1]
        assert isinstance(last, PipelineFailed)
        assert last.error == "simulated fail"

    async def test_events_taken_before_run_deliver_the_whole_run(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """An events() iterator taken before run() yields that run's events, then ends,
        even when it is read after the run."""
        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})
        events = pipeline.events()

        await pipeline.run()

        with anyio.fail_after(0.5):
            streamed = [event async for event in events]
        assert isinstance(streamed[0], PipelineStarted)
        assert isinstance(streamed[-1], PipelineCompleted)

    async def test_on_event_callback_only_sees_its_own_run(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Running the same pipeline again does not call the first run's callback."""
        first, second = EventRecorder(), EventRecorder()
        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})

        one = await pipeline.run(on_event=first)
        two = await pipeline.run(on_event=second)

        assert {e.session_id for e in first.events} == {one.session_id}
        assert {e.session_id for e in second.events} == {two.session_id}


class TestPromptRendering:
    """§4.5 and DESIGN §5: $goal expansion and Jinja2 in prompts."""

    async def test_prompt_renders_variables_and_context_values(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """{{ name }} in a prompt is a run variable or a context key."""
        pipeline = load(
            dot(
                """
            digraph rendered {
                start [shape=Mdiamond]
                plan [prompt="Plan"]
                review [prompt="Review {{ ticket }} after {{ last_stage }}"]
                done [shape=Msquare]
                start -> plan -> review -> done
            }
            """
            ),
            tmp_path,
            store,
            variables={"ticket": "T-3"},
        )

        await pipeline.run()

        prompt = (tmp_path / "run" / "review" / "prompt.md").read_text()
        assert prompt == "Review T-3 after plan"

    async def test_goal_with_template_syntax_reaches_the_prompt_verbatim(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """$goal is plain text replacement (§4.5): braces in the goal are not template code."""
        pipeline = load(
            dot(
                """
            digraph braces {
                graph [goal="Support {{ name }} placeholders in e-mails"]
                start [shape=Mdiamond]
                plan [prompt="Plan: $goal"]
                done [shape=Msquare]
                start -> plan -> done
            }
            """
            ),
            tmp_path,
            store,
        )

        result = await pipeline.run()

        assert result.status == "success"
        prompt = (tmp_path / "run" / "plan" / "prompt.md").read_text()
        assert prompt == "Plan: Support {{ name }} placeholders in e-mails"


class TestRunDirectory:
    """§5.6 and DESIGN §2: manifest.json and checkpoint.json in the run directory."""

    async def test_manifest_names_the_run(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """manifest.json has the pipeline's name and goal, a start time and the session id."""
        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})
        before = time.time()

        result = await pipeline.run()

        manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
        assert manifest["name"] == "single"
        assert manifest["goal"] == "keep the lights on"
        assert manifest["session_id"] == result.session_id
        assert before - 1 <= manifest["start_time"] <= time.time()

    async def test_checkpoint_after_each_node(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A checkpoint is made durable in the store after every node, before the next one
        starts; checkpoint.json mirrors the last one."""
        order: list[str] = []

        def on_event(event: Event) -> None:
            if isinstance(event, StageStarted | CheckpointSaved):
                order.append(f"{type(event).__name__}:{event.node_id}")

        result = await load(LINEAR, tmp_path, store, handlers={"probe": Probe()}).run(
            on_event=on_event
        )

        nodes = ["start", "work", "next", "done"]
        assert order == [
            f"{kind}:{n}" for n in nodes for kind in ("StageStarted", "CheckpointSaved")
        ]
        checkpoints = await turns(store, result.session_id, CHECKPOINT)
        assert [c["node_id"] for c in checkpoints] == nodes
        mirror = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert (mirror["current_node"], mirror["completed_nodes"]) == ("done", nodes)

    async def test_checkpoint_stores_a_context_update_once(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A 10 KB context update is stored once in its checkpoint, not again inside the
        outcome; the loaded session still has the outcome's updates whole, in order."""
        big, small = "x" * 10_000, "kept"
        outcome = Outcome.success(context_updates={"notes.big": big, "outcome": small})
        source = single('type="probe"')
        pipeline = load(source, tmp_path, store, handlers={"probe": Probe({"work": outcome})})

        result = await pipeline.run()

        history = await session_history(store, result.session_id)
        work = [t for t in history if t.type_id == CHECKPOINT and decode(t)["node_id"] == "work"]
        assert 10_000 < len(work[0].payload) < 15_000
        state = await load_session(store, result.session_id)
        # "outcome" differs from the context's (the engine sets it after the updates), so it
        # is kept in the outcome; "notes.big" comes back from the context.
        assert state.node_outcomes["work"]["context_updates"] == {
            "notes.big": big,
            "outcome": small,
        }
        assert list(state.node_outcomes["work"]["context_updates"]) == ["notes.big", "outcome"]

    async def test_unwritable_stage_directory_stops_the_run_with_its_path(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A stage directory that cannot be made (a file is in its place) stops the run with
        a RunDirectoryError naming the path; the checkpoints before it stay in the store."""
        (tmp_path / "run").mkdir()
        (tmp_path / "run" / "work").write_text("in the way")
        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})

        with pytest.raises(RunDirectoryError, match=r"run/work.*cannot write the run directory"):
            await pipeline.run()

        sessions = await store.list_contexts()
        checkpoints = await turns(store, str(sessions[0].context_id), CHECKPOINT)
        assert [c["node_id"] for c in checkpoints][:2] == ["start", "work"]


class TestStatusFiles:
    """Appendix C: status.json in each stage directory, written by the engine or a tool."""

    async def test_codergen_status_file_has_the_contract_fields(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A stage's status.json has outcome, preferred_label, suggested_next_ids,
        context_updates and notes."""
        pipeline = load(LINEAR, tmp_path, store, handlers={"probe": Probe()})

        await pipeline.run()

        status = json.loads((tmp_path / "run" / "work" / "status.json").read_text())
        assert {
            "outcome",
            "preferred_label",
            "suggested_next_ids",
            "context_updates",
            "notes",
        } <= set(status)
        assert status["outcome"] == "success"
        assert (status["preferred_label"], status["suggested_next_ids"]) == ("", [])
        assert status["context_updates"]["last_stage"] == "work"
        assert status["notes"]

    async def test_tool_written_status_sets_the_outcome_and_label(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """A tool that exits 0 but writes outcome=fail with a preferred_label fails, and the
        label is there for the fail edge's condition."""
        status = {"outcome": "fail", "preferred_label": "Flaky", "notes": "two tests flaked"}
        probe = Probe()
        pipeline = load(
            tool(
                writes_status(status),
                edges="work -> triage "
                '[condition="outcome=fail && preferred_label=Flaky", weight=1]',
                extra='triage [type="probe"]\ntriage -> done',
            ),
            in_tmp,
            store,
            handlers={"probe": probe},
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "fail"
        assert result.node_outcomes["work"]["notes"] == "two tests flaked"
        assert result.completed_nodes == ("start", "work", "triage", "done")
        assert probe.context_at("triage")["preferred_label"] == "Flaky"

    async def test_tool_written_status_updates_context_and_suggests_next(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """context_updates from a tool's status.json reach the context, and its
        suggested_next_ids pick the next node."""
        status = {
            "outcome": "success",
            "suggested_next_ids": ["recover"],
            "context_updates": {"build.id": "b-42"},
        }
        pipeline = load(
            tool(writes_status(status), edges="work -> recover"),
            in_tmp,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        assert result.completed_nodes == ("start", "work", "recover", "done")
        assert result.context["build.id"] == "b-42"

    async def test_malformed_status_file_is_a_fail_naming_it(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """A status.json that is not JSON fails the node, naming the file."""
        pipeline = load(
            tool(writes_status('{"outcome": "fail",')), in_tmp, store, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        work = result.node_outcomes["work"]
        assert work["outcome"] == "fail"
        assert str(in_tmp / "run" / "work" / "status.json") in work["failure_reason"]

    async def test_every_executed_stage_has_a_status_file(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """§11.3: the outcome of every non-terminal node, whatever its handler, is written to
        {logs_root}/{node_id}/status.json."""
        pipeline = load(
            dot(
                """
            digraph mixed {
                start [shape=Mdiamond]
                ask [shape=hexagon, label="Go?"]
                gate [shape=diamond]
                custom [type="probe"]
                done [shape=Msquare]
                start -> ask
                ask -> gate [label="[Y] Yes"]
                gate -> custom -> done
            }
            """
            ),
            tmp_path,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        for node_id in ("ask", "gate", "custom"):
            path = tmp_path / "run" / node_id / "status.json"
            assert path.is_file(), f"{node_id} has no status.json"
            recorded = json.loads(path.read_text())["outcome"]
            assert recorded == result.node_outcomes[node_id]["outcome"]

    async def test_status_file_records_the_outcome_the_engine_routed_on(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A node whose retries ran out on RETRY is FAIL, in status.json as in routing."""
        pipeline = load(
            single('prompt="Work", sim_outcomes="retry"'),
            tmp_path,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "fail"
        status = json.loads((tmp_path / "run" / "work" / "status.json").read_text())
        assert status["outcome"] == "fail"


class TestToolHandler:
    """§4.10 and DESIGN §2: shell commands, their output, exit status and environment."""

    async def test_output_goes_to_tool_output_and_stdout_to_context(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """stdout and stderr are both in tool_output.txt; stdout is context["tool.output"]."""
        pipeline = load(
            tool("echo built; echo warning >&2"), in_tmp, store, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        assert result.context["tool.output"] == "built\n"
        output = (in_tmp / "run" / "work" / "tool_output.txt").read_text()
        assert "built" in output
        assert "warning" in output
        assert result.node_outcomes["work"]["outcome"] == "success"

    async def test_a_process_left_running_is_killed_and_does_not_hold_the_stage(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """`sleep 60 &` keeps the output pipe open: the stage still ends when the command
        does, and the sleep, left in the command's process group, is killed."""
        pipeline = load(tool("sleep 60 & echo $!"), in_tmp, store, handlers={"probe": Probe()})

        with anyio.fail_after(20):
            result = await pipeline.run()

        assert result.node_outcomes["work"]["outcome"] == "success"
        stat = Path(f"/proc/{int(result.context['tool.output'])}/stat")
        with anyio.fail_after(10):
            while stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z":
                await anyio.sleep(0.02)

    async def test_non_zero_exit_is_a_fail(self, in_tmp: Path, store: EmbeddedStore) -> None:
        """Exit status 3 fails the node with the status and stderr's last line."""
        pipeline = load(
            tool("echo 'lint: 2 errors' >&2; exit 3"), in_tmp, store, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        work = result.node_outcomes["work"]
        assert work["outcome"] == "fail"
        assert "exit status 3" in work["failure_reason"]
        assert "lint: 2 errors" in work["failure_reason"]
        assert "recover" in result.completed_nodes

    async def test_missing_command_says_command_not_found(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """Exit status 127 is reported as "command not found"."""
        pipeline = load(
            tool("orchestra-no-such-command-xyz"), in_tmp, store, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        assert result.node_outcomes["work"]["failure_reason"].startswith(
            "command not found (exit 127)"
        )

    async def test_attractor_environment_is_set(self, in_tmp: Path, store: EmbeddedStore) -> None:
        """The command sees ATTRACTOR_STAGE_DIR, _NODE_ID, _LOGS_ROOT and _RUN_ID."""
        pipeline = load(
            tool(
                'echo "$ATTRACTOR_STAGE_DIR|$ATTRACTOR_NODE_ID|'
                '$ATTRACTOR_LOGS_ROOT|$ATTRACTOR_RUN_ID"'
            ),
            in_tmp,
            store,
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        run = (in_tmp / "run").resolve()
        assert result.context["tool.output"].strip().split("|") == [
            str(run / "work"),
            "work",
            str(run),
            result.session_id,
        ]

    async def test_substituted_values_are_shell_quoted(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """A variable holding $(touch PWNED) is echoed as text, never run."""
        pipeline = load(
            tool('cd "$ATTRACTOR_STAGE_DIR" && echo {{ title }}'),
            in_tmp,
            store,
            variables={"title": "$(touch PWNED)"},
            handlers={"probe": Probe()},
        )

        result = await pipeline.run()

        assert result.context["tool.output"] == "$(touch PWNED)\n"
        assert not (in_tmp / "run" / "work" / "PWNED").exists()

    async def test_values_marked_safe_are_substituted_verbatim(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """|safe opts a value out of quoting, so the same variable does run (the control
        for the quoting test above)."""
        pipeline = load(
            tool('cd "$ATTRACTOR_STAGE_DIR" && echo {{ title|safe }}'),
            in_tmp,
            store,
            variables={"title": "$(touch PWNED)"},
            handlers={"probe": Probe()},
        )

        await pipeline.run()

        assert (in_tmp / "run" / "work" / "PWNED").exists()

    async def test_undefined_template_variable_is_a_fail_naming_it(
        self, in_tmp: Path, store: EmbeddedStore
    ) -> None:
        """A command naming an unknown variable fails without running, naming it."""
        pipeline = load(
            tool("touch ran && echo {{ release_tag }}"), in_tmp, store, handlers={"probe": Probe()}
        )

        result = await pipeline.run()

        work = result.node_outcomes["work"]
        assert work["outcome"] == "fail"
        assert "release_tag" in work["failure_reason"]
        assert not (in_tmp / "ran").exists()


HUMAN = dot(
    """
    digraph approval {{
        start [shape=Mdiamond]
        review [shape=hexagon, label="Ship it?" {attributes}]
        ship [type="probe"]
        fix [type="probe"]
        done [shape=Msquare]
        start -> review
        review -> ship [label="[Y] Yes, ship it"]
        review -> fix [label="[N] No, fix it"]
        ship -> done
        fix -> done
    }}
    """
)


async def _ignore(event: Event) -> None:
    return None


async def _no_branches(node_id: str, context: Context, branch: str) -> BranchResult:
    raise AssertionError("a human gate runs no branches")


class TestHumanGate:
    """§4.6 and §6: choosing, skipping and timing out at a wait.human node."""

    @pytest.mark.parametrize("answer", ["N", "n", "No, fix it", "[N] No, fix it"])
    async def test_answer_by_accelerator_key_or_label_routes(
        self, tmp_path: Path, store: EmbeddedStore, answer: str
    ) -> None:
        """The key, in either case, or the label, with or without its prefix, picks it."""
        probe = Probe()
        pipeline = load(
            HUMAN.format(attributes=""),
            tmp_path,
            store,
            interviewer=QueueInterviewer([answer]),
            handlers={"probe": probe},
        )

        result = await pipeline.run()

        assert probe.ran == ["fix"]
        assert result.context["human.gate.selected"] == "N"

    async def test_skipped_is_a_fail(self, tmp_path: Path, store: EmbeddedStore) -> None:
        """A skipped question fails the gate (an empty queue answers SKIPPED)."""
        probe = Probe()
        pipeline = load(
            HUMAN.format(attributes=""),
            tmp_path,
            store,
            interviewer=QueueInterviewer([]),
            handlers={"probe": probe},
        )

        result = await pipeline.run()

        assert result.status == "fail"
        assert "skipped" in result.failure_reason
        assert probe.ran == []

    async def test_timeout_takes_the_default_choice(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """On TIMEOUT the gate follows human.default_choice."""
        probe = Probe()
        log = EventRecorder()
        pipeline = load(
            HUMAN.format(attributes=', human.default_choice="fix"'),
            tmp_path,
            store,
            interviewer=QueueInterviewer([Answer(AnswerValue.TIMEOUT)]),
            handlers={"probe": probe},
        )

        result = await pipeline.run(on_event=log)

        assert probe.ran == ["fix"]
        assert result.node_outcomes["review"]["outcome"] == "success"
        assert len(log.of(InterviewTimeout, "review")) == 1

    async def test_timeout_without_default_asks_for_a_retry(self, tmp_path: Path) -> None:
        """On TIMEOUT with no human.default_choice the handler returns RETRY."""
        graph = parse_dot(HUMAN.format(attributes=""))
        stage = StageRun(
            session_id="1",
            logs_root=tmp_path,
            stage_dir=tmp_path / "review",
            attempt=1,
            execution=1,
            variables={},
            emit=_ignore,
            interviewer=QueueInterviewer([Answer(AnswerValue.TIMEOUT)]),
            backend=SimulationBackend(),
            run_branch=_no_branches,
        )

        outcome = await WaitForHumanHandler().execute(
            graph.nodes["review"], Context(), graph, stage
        )

        assert outcome.status is StageStatus.RETRY
        assert outcome.failure_reason == (
            "human gate 'review' timed out and has no human.default_choice to take"
        )

    async def test_retry_after_timeout_asks_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """With max_retries, a timed-out gate asks again and routes on the new answer."""
        probe = Probe()
        interviewer = QueueInterviewer([Answer(AnswerValue.TIMEOUT), "N"])
        pipeline = load(
            HUMAN.format(attributes=", max_retries=1"),
            tmp_path,
            store,
            interviewer=interviewer,
            handlers={"probe": probe},
        )

        result = await pipeline.run()

        assert len(interviewer.asked) == 2
        assert probe.ran == ["fix"]
        assert result.status == "success"

    async def test_answer_given_before_a_crash_is_not_asked_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """An answer recorded before the run was interrupted is reused when it resumes."""
        probe = Probe()
        pipeline = load(
            HUMAN.format(attributes=""),
            tmp_path,
            store,
            interviewer=QueueInterviewer(["N"]),
            handlers={"probe": probe},
        )

        async with anyio.create_task_group() as group:

            def stop_after_the_answer(event: Event) -> None:
                if isinstance(event, StageCompleted) and event.node_id == "review":
                    group.cancel_scope.cancel()

            group.start_soon(functools.partial(pipeline.run, on_event=stop_after_the_answer))
        assert pipeline.session_id is not None
        unanswered = QueueInterviewer([])

        result = await resume(
            pipeline.session_id, store=store, interviewer=unanswered, handlers={"probe": probe}
        )

        assert unanswered.asked == []
        assert probe.ran == ["fix"]
        assert result.status == "success"


RESUMABLE = dot(
    """
    digraph resumable {
        start [shape=Mdiamond]
        first [type="stall"]
        second [type="stall"]
        third [type="stall"]
        done [shape=Msquare]
        start -> first -> second -> third -> done
    }
    """
)


class Stall:
    """A custom handler that, the first time it runs node ``stall_at``, announces itself and
    waits to be cancelled; otherwise it succeeds. Records every node it runs."""

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
        return Outcome.success(f"{node.id} done")


class LosesSessionEnd:
    """A store whose SessionEnded turn never lands, as when the process is killed."""

    def __init__(self, inner: EmbeddedStore) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def append_turn(
        self,
        context_id: int,
        type_id: str,
        type_version: int,
        payload: bytes,
        *,
        parent_turn_id: int = 0,
        expect_head: int | None = None,
    ) -> TurnRecord:
        if type_id == SESSION_ENDED:
            raise StoreError("the process was killed before it could record the end")
        return await self.inner.append_turn(
            context_id,
            type_id,
            type_version,
            payload,
            parent_turn_id=parent_turn_id,
            expect_head=expect_head,
        )


async def interrupted(pipeline: Pipeline, stall: Stall) -> str:
    """Run ``pipeline`` until ``stall`` is reached, then cancel it; the session id."""
    async with anyio.create_task_group() as group:
        group.start_soon(pipeline.run)
        await stall.reached.wait()
        group.cancel_scope.cancel()
    assert pipeline.session_id is not None
    return pipeline.session_id


class TestResume:
    """DESIGN §2-3: resume continues a session from its last checkpoint."""

    async def test_crashed_session_resumes_without_rerunning_completed_nodes(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A session with no SessionEnded continues at the node that was running; the
        nodes checkpointed before the crash do not run again."""
        stall = Stall(stall_at="second")
        pipeline = load(RESUMABLE, tmp_path, LosesSessionEnd(store), handlers={"stall": stall})
        session_id = await interrupted(pipeline, stall)
        state = await load_session(store, session_id)
        assert (state.ended, state.next_node) == ("", "second")

        result = await resume(session_id, store=store, handlers={"stall": stall})

        assert stall.calls == ["first", "second", "second", "third"]
        assert result.status == "success"
        assert result.completed_nodes == ("start", "first", "second", "third", "done")
        checkpoint = json.loads((tmp_path / "run" / "checkpoint.json").read_text())
        assert checkpoint["current_node"] == "done"

    @pytest.mark.parametrize("outcome", ["success", "fail"])
    async def test_finished_session_is_refused(
        self, tmp_path: Path, store: EmbeddedStore, outcome: str
    ) -> None:
        """A session that ended, in success or failure, cannot be resumed."""
        pipeline = load(
            dot(
                f"""
            digraph finished {{
                start [shape=Mdiamond]
                work [prompt="Work", sim_outcomes="{outcome}"]
                done [shape=Msquare]
                start -> work -> done
            }}
            """
            ),
            tmp_path,
            store,
        )
        result = await pipeline.run()
        assert result.status == outcome

        with pytest.raises(ResumeRefused, match="already finished"):
            await resume(result.session_id, store=store)

    async def test_changed_dot_file_is_refused_unless_forced(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Editing the DOT file after the crash refuses resume; force=True resumes with
        the file as it is now."""
        path = tmp_path / "pipeline.dot"
        path.write_text(RESUMABLE)
        stall = Stall(stall_at="second")
        session_id = await interrupted(
            load(str(path), tmp_path, store, handlers={"stall": stall}), stall
        )
        path.write_text(RESUMABLE.replace("third [", 'third [label="Third, renamed", '))

        with pytest.raises(ResumeRefused, match="changed"):
            await resume(session_id, store=store, handlers={"stall": stall})
        result = await resume(session_id, store=store, handlers={"stall": stall}, force=True)

        assert result.status == "success"
        assert stall.calls == ["first", "second", "second", "third"]
