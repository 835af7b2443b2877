"""Choosing a backend per node, the `direct` backend, context fidelity across stages, and
what LLM stages spent, per node and per run."""

from __future__ import annotations

import os
from pathlib import Path

import anyio
import pytest

from orchestra.backends.agent import AgentBackend
from orchestra.backends.configured import ConfiguredBackend, Settings, load_settings
from orchestra.backends.direct import DirectBackend
from orchestra.backends.simulation import SimulationBackend
from orchestra.config import Config, ProviderConfig, Providers
from orchestra.dot import parse_dot
from orchestra.engine.session import load_session
from orchestra.errors import ConfigError, ValidationError
from orchestra.events import StageCompleted
from orchestra.llm.client import Client
from orchestra.llm.types import Role, ToolCall, Usage
from orchestra.outcome import Outcome
from orchestra.pipeline import Pipeline, resume
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import EventRecorder, ScriptedModel, Step, model_calls, model_says

CONFIG = Config(
    backend="agent",
    providers=Providers(
        default="anthropic",
        by_name={"anthropic": ProviderConfig(models={"worker": "claude-sonnet-4-5"})},
    ),
)
KEYS = {"ANTHROPIC_API_KEY": "sk-test"}


def says(text: str, usage: Usage | None = None) -> Step:
    return model_says(
        text, usage=usage or Usage(100, 20), model="claude-sonnet-4-5", provider="anthropic"
    )


def configured(
    model: ScriptedModel, tmp_path: Path, config: Config = CONFIG, default: str | None = None
) -> ConfiguredBackend:
    (tmp_path / "ws").mkdir(exist_ok=True)
    return ConfiguredBackend(
        Settings(config, KEYS),
        default=default,
        workspace=tmp_path / "ws",
        client=Client({"anthropic": model}),
    )


def two_stages(first: str = "", second: str = "", graph: str = "") -> str:
    return f"""
    digraph two {{
        graph [goal="ship the parser" {graph}]
        start [shape=Mdiamond]
        plan  [prompt="Plan the work" {first}]
        build [prompt="Build it" {second}]
        exit  [shape=Msquare]
        start -> plan -> build -> exit
    }}
    """


class TestChoosingTheBackend:
    async def test_a_node_backend_attribute_overrides_the_default(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The default is the agent; `backend="simulation"` on one node runs it without a
        model, so the model sees only the other node's request."""
        model = ScriptedModel([says("planned")], name="anthropic")
        dot = two_stages(second='backend="simulation"')
        pipeline = Pipeline.load(
            dot, store=store, backend=configured(model, tmp_path), logs_root=tmp_path / "run"
        )

        result = await pipeline.run()

        assert result.succeeded
        assert len(model.requests) == 1
        assert "Plan the work" in model.requests[0].messages[-1].text
        assert result.context["last_response"].startswith("[Simulated]")

    def test_an_unknown_node_backend_is_refused_at_load(self, tmp_path: Path) -> None:
        with pytest.raises(ValidationError) as caught:
            Pipeline.load(
                two_stages(first='backend="gpt"'), backend=configured(ScriptedModel([]), tmp_path)
            )
        assert "node 'plan' has backend 'gpt', which is not a backend" in str(caught.value)

    async def test_an_unknown_node_backend_fails_that_node_and_names_the_choices(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A graph built without validation still cannot run a node on a backend that
        does not exist: the node fails, naming the choices."""
        model = ScriptedModel([says("planned")], name="anthropic")
        pipeline = Pipeline(
            parse_dot(two_stages(first='backend="gpt"')),
            store=store,
            backend=configured(model, tmp_path),
            logs_root=tmp_path / "run",
        )

        result = await pipeline.run()

        assert not result.succeeded
        assert "node 'plan' backend: unknown backend 'gpt'" in result.failure_reason
        assert "agent, direct, cli_agent, simulation" in result.failure_reason
        assert model.requests == []

    def test_an_llm_backend_without_a_key_is_refused_before_the_run(self, tmp_path: Path) -> None:
        with pytest.raises(ConfigError) as caught:
            ConfiguredBackend(Settings(CONFIG, {}), default="agent")
        message = str(caught.value)
        assert "no provider key is set" in message
        assert "ANTHROPIC_API_KEY or OPENAI_API_KEY" in message
        assert "--backend simulation" in message

    async def test_a_simulation_run_simulates_every_node_whatever_its_backend(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """--backend simulation (or no key) is a dry run: a node's backend="direct" does
        not call a model, and needs no key."""
        dot = two_stages(first='backend="direct"', second='backend="agent"')
        pipeline = Pipeline.load(
            dot, store=store, backend="simulation", logs_root=tmp_path / "run", config=CONFIG
        )

        result = await pipeline.run()

        assert result.succeeded
        plan = (tmp_path / "run" / "plan" / "response.md").read_text()
        assert plan == "[Simulated] Response for stage: plan"
        assert result.context["last_response"] == "[Simulated] Response for stage: build"

    def test_langgraph_from_older_configs_means_agent(self) -> None:
        backend = ConfiguredBackend(Settings(CONFIG, KEYS), default="langgraph")
        assert backend.default == "agent"

    def test_each_name_builds_its_backend_once(self, tmp_path: Path) -> None:
        backend = configured(ScriptedModel([]), tmp_path)
        pipeline = Pipeline.load(two_stages(first='backend="direct"'), backend=backend)
        plan, build = pipeline.graph.nodes["plan"], pipeline.graph.nodes["build"]

        assert isinstance(backend.backend_for(plan), DirectBackend)
        assert isinstance(backend.backend_for(build), AgentBackend)
        assert backend.backend_for(build) is backend.backend_for(build)

    def test_settings_come_from_the_pipelines_directory_and_its_env_file(
        self, tmp_path: Path
    ) -> None:
        """orchestra.yaml beside the pipeline names no backend, .env beside it holds a key:
        the agent is the default, and the process environment is left as it was."""
        (tmp_path / "orchestra.yaml").write_text(
            "providers:\n  anthropic:\n    models: {worker: claude-sonnet-4-5}\n"
        )
        (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-from-dotenv\n")
        (tmp_path / "p.dot").write_text(two_stages())

        settings = load_settings(tmp_path / "p.dot")
        pipeline = Pipeline.load(tmp_path / "p.dot")

        assert settings.config.backend == "agent"
        assert settings.environ["ANTHROPIC_API_KEY"] == "sk-from-dotenv"
        assert "ANTHROPIC_API_KEY" not in os.environ
        assert isinstance(pipeline.backend, ConfiguredBackend)
        assert pipeline.backend.default == "agent"

    def test_settings_never_show_the_keys(self) -> None:
        assert "sk-test" not in repr(Settings(CONFIG, KEYS))

    def test_without_config_or_key_the_default_is_simulation(self, tmp_path: Path) -> None:
        (tmp_path / "p.dot").write_text(two_stages())
        pipeline = Pipeline.load(tmp_path / "p.dot")
        node = pipeline.graph.nodes["plan"]
        assert isinstance(pipeline.backend, ConfiguredBackend)
        assert isinstance(pipeline.backend.backend_for(node), SimulationBackend)


class TestDirectBackend:
    async def test_one_call_without_tools_and_the_status_block_routes(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        status = '```status\n{"outcome": "fail", "notes": "the plan has a hole"}\n```'
        model = ScriptedModel([says(f"Looked at it.\n{status}")], name="anthropic")
        backend = configured(model, tmp_path, default="direct")
        result = await Pipeline.load(
            two_stages(), store=store, backend=backend, logs_root=tmp_path / "run"
        ).run()

        assert not result.succeeded
        assert result.failure_reason == "the plan has a hole"
        (request,) = model.requests
        assert request.tools == ()
        assert [m.role for m in request.messages] == [Role.SYSTEM, Role.USER]
        assert result.context["usage.plan.model_calls"] == 1

    async def test_a_resumed_node_uses_the_recorded_answer(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The answer is recorded as soon as it comes: a crash after it (here, in the next
        node's call) resumes without asking the model for the first node's answer again."""
        scope = anyio.CancelScope()
        first = ScriptedModel([says("planned"), scope.cancel], name="anthropic")
        dot = two_stages(first='backend="direct"', second='backend="direct"')
        pipeline = Pipeline.load(
            dot, store=store, backend=configured(first, tmp_path), logs_root=tmp_path / "run"
        )
        with scope:
            await pipeline.run()
        assert pipeline.session_id is not None

        second = ScriptedModel([says("built")], name="anthropic")
        result = await resume(
            pipeline.session_id, store=store, backend=configured(second, tmp_path)
        )

        assert result.succeeded
        assert len(second.requests) == 1
        assert "Build it" in second.requests[0].messages[-1].text


class TestFidelity:
    async def test_compact_by_default_a_fresh_session_opens_with_the_run_so_far(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        model = ScriptedModel([says("planned"), says("built")], name="anthropic")
        await Pipeline.load(
            two_stages(), store=store, backend=configured(model, tmp_path), logs_root=tmp_path
        ).run()

        second = model.requests[1]
        assert [m.role for m in second.messages] == [Role.SYSTEM, Role.USER]
        opening = second.messages[1].text
        assert "ship the parser" in opening
        assert "plan" in opening
        assert "success" in opening
        assert opening.endswith("Build it")
        assert "fidelity: compact" in (tmp_path / "build" / "conversation.md").read_text()

    async def test_full_fidelity_continues_the_conversation_of_the_thread(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        write = ToolCall("c1", "write_file", {"file_path": "a.txt", "content": "x"})
        model = ScriptedModel(
            [
                model_calls(write, model="claude-sonnet-4-5", provider="anthropic"),
                says("planned"),
                says("built"),
            ],
            name="anthropic",
        )
        dot = two_stages('thread_id="main"', 'thread_id="main"', 'default_fidelity="full"')
        await Pipeline.load(
            dot, store=store, backend=configured(model, tmp_path), logs_root=tmp_path
        ).run()

        third = model.requests[2]
        texts = [m.text for m in third.messages]
        assert "Plan the work" in texts[1]
        assert any(m.role is Role.TOOL for m in third.messages)
        assert texts[-2] == "planned"
        assert texts[-1] == "Build it"

    async def test_a_full_thread_passes_from_a_direct_stage_to_an_agent_stage(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        model = ScriptedModel([says("planned"), says("built")], name="anthropic")
        dot = two_stages(
            'backend="direct", thread_id="main"', 'thread_id="main"', 'default_fidelity="full"'
        )
        await Pipeline.load(
            dot, store=store, backend=configured(model, tmp_path), logs_root=tmp_path
        ).run()

        texts = [m.text for m in model.requests[1].messages]
        assert texts[-2:] == ["planned", "Build it"]
        assert "Plan the work" in texts[1]

    async def test_truncate_carries_only_the_goal_and_run_id(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        model = ScriptedModel([says("planned"), says("built")], name="anthropic")
        pipeline = Pipeline.load(
            two_stages(second='fidelity="truncate"'),
            store=store,
            backend=configured(model, tmp_path),
            logs_root=tmp_path,
        )
        await pipeline.run()

        opening = model.requests[1].messages[1].text
        assert "ship the parser" in opening
        assert str(pipeline.session_id) in opening
        assert "plan" not in opening.replace("Build it", "")

    async def test_after_a_resume_full_fidelity_starts_from_a_high_summary(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The thread's conversation lived in the crashed process: the next node on the
        thread opens with the summary:high preamble instead (spec §5.3)."""
        scope = anyio.CancelScope()

        class Crash:
            async def execute(self, *args: object) -> None:
                scope.cancel()
                await anyio.sleep_forever()

        class Pass:
            async def execute(self, *args: object) -> Outcome:
                return Outcome.success("passed")

        dot = """
        digraph crash {
            graph [goal="ship the parser", default_fidelity="full", context_thread_default="t"]
            start [shape=Mdiamond]
            plan  [prompt="Plan the work"]
            pause [type="pause"]
            build [prompt="Build it"]
            exit  [shape=Msquare]
            start -> plan -> pause -> build -> exit
        }
        """
        first = ScriptedModel([says("planned")], name="anthropic")
        pipeline = Pipeline.load(
            dot,
            store=store,
            backend=configured(first, tmp_path),
            handlers={"pause": Crash()},
            logs_root=tmp_path,
        )
        with scope:
            await pipeline.run()
        assert pipeline.session_id is not None

        second = ScriptedModel([says("built")], name="anthropic")
        result = await resume(
            pipeline.session_id,
            store=store,
            backend=configured(second, tmp_path),
            handlers={"pause": Pass()},
        )

        assert result.succeeded
        (request,) = second.requests
        assert [m.role for m in request.messages] == [Role.SYSTEM, Role.USER]
        assert "plan" in request.messages[1].text
        assert "fidelity: summary:high" in (tmp_path / "build" / "conversation.md").read_text()

    async def test_a_node_resumed_mid_call_continues_its_recorded_conversation(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Stopped during build's first call, build's opening (plan's conversation, carried
        by the thread) is already recorded: the resumed call sends it unchanged."""
        scope = anyio.CancelScope()
        first = ScriptedModel([says("planned"), scope.cancel], name="anthropic")
        dot = two_stages(graph='default_fidelity="full", context_thread_default="t"')
        pipeline = Pipeline.load(
            dot, store=store, backend=configured(first, tmp_path), logs_root=tmp_path
        )
        with scope:
            await pipeline.run()
        assert pipeline.session_id is not None

        second = ScriptedModel([says("built")], name="anthropic")
        await resume(pipeline.session_id, store=store, backend=configured(second, tmp_path))

        (request,) = second.requests
        assert request.messages == first.requests[1].messages


class TestUsage:
    async def test_usage_adds_up_per_node_over_executions_and_per_run(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A node that runs twice (a loop) counts both executions; the session read back
        from the store gives the same figures; each stage's event carries its usage."""
        dot = """
        digraph loop {
            start [shape=Mdiamond]
            work  [prompt="Work", backend="direct"]
            gate  [shape=diamond]
            exit  [shape=Msquare]
            start -> work -> gate
            gate -> work [condition="context.again=yes", max_visits=1]
            gate -> exit
        }
        """
        again = '```status\n{"outcome": "success", "context_updates": {"again": "yes"}}\n```'
        done = '```status\n{"outcome": "success", "context_updates": {"again": "no"}}\n```'
        model = ScriptedModel(
            [says(again, Usage(1000, 100)), says(done, Usage(2000, 300))], name="anthropic"
        )
        events = EventRecorder()
        result = await Pipeline.load(
            dot, store=store, backend=configured(model, tmp_path), logs_root=tmp_path
        ).run(on_event=events)

        assert result.usage["work"]["input_tokens"] == 3000
        assert result.usage["work"]["output_tokens"] == 400
        assert result.usage["work"]["model_calls"] == 2
        assert result.usage["work"]["model"] == "anthropic/claude-sonnet-4-5"
        assert result.usage["work"]["cost_usd"] > 0
        state = await load_session(store, result.session_id)
        assert state.usage == result.usage
        per_stage = [e.usage["input_tokens"] for e in events.of(StageCompleted, "work")]
        assert per_stage == [1000, 2000]


class TestAgentWorkspaceAndHooks:
    async def test_a_relative_workspace_is_taken_from_the_pipelines_directory(
        self, tmp_path: Path, store: EmbeddedStore, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        (tmp_path / "project" / "app").mkdir(parents=True)
        (tmp_path / "project" / "p.dot").write_text(two_stages(first='workspace="app"'))
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        monkeypatch.chdir(elsewhere)
        write = ToolCall("c1", "write_file", {"file_path": "out.txt", "content": "x"})
        model = ScriptedModel(
            [
                model_calls(write, model="claude-sonnet-4-5", provider="anthropic"),
                says("planned"),
                says("built"),
            ],
            name="anthropic",
        )
        pipeline = Pipeline.load(
            tmp_path / "project" / "p.dot",
            store=store,
            backend=configured(model, tmp_path),
            logs_root=tmp_path / "run",
        )

        assert (await pipeline.run()).succeeded
        assert (tmp_path / "project" / "app" / "out.txt").read_text() == "x"
        assert not (elsewhere / "app").exists()

    async def test_a_pre_hook_that_refuses_skips_the_tool_call_and_logs_it(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """`tool_hooks.pre` on the graph runs before each call; exit 1 means the write never
        happens, the model is told why, and the stage's hook log says so."""
        write = ToolCall("c1", "write_file", {"file_path": "out.txt", "content": "x"})
        model = ScriptedModel(
            [
                model_calls(write, model="claude-sonnet-4-5", provider="anthropic"),
                says("planned"),
                says("built"),
            ],
            name="anthropic",
        )
        hook = '"tool_hooks.pre"="echo no writes today >&2; exit 1"'
        pipeline = Pipeline.load(
            two_stages(graph=hook),
            store=store,
            backend=configured(model, tmp_path),
            logs_root=tmp_path / "run",
        )

        assert (await pipeline.run()).succeeded
        assert not (tmp_path / "ws" / "out.txt").exists()
        (part,) = model.requests[1].messages[-1].content
        assert part.tool_result is not None
        told = str(part.tool_result.content)
        assert part.tool_result.is_error
        assert "refused by the pre-hook" in told
        assert "no writes today" in told
        log = (tmp_path / "run" / "plan" / "tool_hooks.jsonl").read_text()
        assert "skipped the call" in log

    async def test_stages_inside_a_fan_out_count_too(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """Branch stages are not checkpointed one by one: the fan-out's checkpoint carries
        what every stage of every branch spent, not only each branch's last stage."""
        dot = """
        digraph fan {
            start [shape=Mdiamond]
            fan   [shape=component]
            a1    [prompt="A1", backend="direct"]
            a2    [prompt="A2", backend="direct"]
            b1    [prompt="B1", backend="direct"]
            join  [shape=tripleoctagon]
            exit  [shape=Msquare]
            start -> fan
            fan -> a1 -> a2 -> join
            fan -> b1 -> join
            join -> exit
        }
        """
        model = ScriptedModel([says("ok", Usage(100, 10)) for _ in range(3)], name="anthropic")
        result = await Pipeline.load(
            dot, store=store, backend=configured(model, tmp_path), logs_root=tmp_path
        ).run()

        assert result.succeeded
        assert {node: fields["input_tokens"] for node, fields in result.usage.items()} == {
            "a1": 100,
            "a2": 100,
            "b1": 100,
        }
        state = await load_session(store, result.session_id)
        assert state.usage == result.usage


class TestToolAllowlist:
    async def test_agent_tools_limits_what_the_model_is_offered_and_may_call(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """agent.tools="read_file, grep, glob": only those are offered, and a call to any
        other tool (write_file) is refused without touching the workspace."""
        write = ToolCall("c1", "write_file", {"file_path": "out.txt", "content": "x"})
        model = ScriptedModel(
            [
                model_calls(write, model="claude-sonnet-4-5", provider="anthropic"),
                says("reviewed"),
                says("built"),
            ],
            name="anthropic",
        )
        source = two_stages(first='"agent.tools"="read_file, grep, glob"')
        pipeline = Pipeline.load(
            source, store=store, backend=configured(model, tmp_path), logs_root=tmp_path / "run"
        )

        assert (await pipeline.run()).succeeded
        offered = [tool.name for tool in model.requests[0].tools or ()]
        assert offered == ["read_file", "grep", "glob"]
        assert not (tmp_path / "ws" / "out.txt").exists()
        (part,) = model.requests[1].messages[-1].content
        assert part.tool_result is not None
        assert part.tool_result.is_error
        assert "Unknown tool: write_file" in str(part.tool_result.content)
        assert len(model.requests[2].tools or ()) == 6  # the next node has every tool

    async def test_a_tool_that_does_not_exist_fails_the_node(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        model = ScriptedModel([], name="anthropic")
        source = two_stages(first='"agent.tools"="read_file, grepp"')
        result = await Pipeline.load(
            source, store=store, backend=configured(model, tmp_path), logs_root=tmp_path / "run"
        ).run()
        assert not result.succeeded
        assert "agent.tools: no tool named grepp" in result.failure_reason


class TestSimulatedContext:
    async def test_sim_context_sets_context_values_per_execution(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """sim_context gives each execution's context updates in turn, the last repeating."""
        source = """
        digraph g {
            start [shape=Mdiamond]; exit [shape=Msquare]
            critic [prompt="judge",
                    sim_context="verdict=insufficient, redo=a b; verdict=sufficient"]
            gate   [shape=diamond]
            start -> critic -> gate
            gate -> critic [condition="context.verdict=insufficient"]
            gate -> exit
        }
        """
        result = await Pipeline.load(
            source, store=store, backend="simulation", logs_root=tmp_path / "run"
        ).run()
        assert result.succeeded
        assert list(result.completed_nodes).count("critic") == 2
        assert result.context["verdict"] == "sufficient"
        assert result.context["redo"] == "a b"


class TestWorkspaceTemplate:
    async def test_workspace_renders_run_dir_and_variables(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """workspace="{{ run_dir }}/{{ sub }}": the run directory and a run variable; the
        agent's file tools work there."""
        source = """
        digraph g {
            start [shape=Mdiamond]; exit [shape=Msquare]
            fetch [shape=parallelogram,
                   tool_command="cd \\"$ATTRACTOR_LOGS_ROOT\\" && mkdir head && echo seen >head/f"]
            look  [prompt="look", workspace="{{ run_dir }}/{{ sub }}"]
            start -> fetch -> look -> exit
        }
        """
        read = ToolCall("c1", "read_file", {"file_path": "f"})
        model = ScriptedModel(
            [model_calls(read, model="claude-sonnet-4-5", provider="anthropic"), says("ok")],
            name="anthropic",
        )
        result = await Pipeline.load(
            source,
            variables={"sub": "head"},
            store=store,
            backend=configured(model, tmp_path),
            logs_root=tmp_path / "run",
        ).run()
        assert result.succeeded, result.failure_reason
        (part,) = model.requests[1].messages[-1].content
        assert part.tool_result is not None
        assert "seen" in str(part.tool_result.content)
        assert not part.tool_result.is_error
