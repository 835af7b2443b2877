"""Orchestra against real providers: the Attractor spec's §11.13 smoke pipeline on the agent
backend, one call on the direct backend, and one streamed call, for Anthropic and OpenAI.

These tests cost money, so they run only when asked. With ``ORCHESTRA_REAL_LLM=1`` and a
provider's key in the environment they call that provider; a provider whose key is unset
is skipped, and without ``ORCHESTRA_REAL_LLM=1`` every test here is skipped::

    ORCHESTRA_REAL_LLM=1 ANTHROPIC_API_KEY=... OPENAI_API_KEY=... \\
        uv run pytest -m real_llm -rs

Each provider runs on its cheap model (``claude-haiku-4-5``, ``gpt-5-mini``), set as the
``cheap`` tier of an ``orchestra.yaml`` written for the test; a whole run costs a few cents.
``ORCHESTRA_REAL_LLM_ANTHROPIC_MODEL`` and ``ORCHESTRA_REAL_LLM_OPENAI_MODEL`` replace the
models, for when one is retired. OpenAI's must be a reasoning model: Orchestra asks the
Responses API for encrypted reasoning, which other models refuse.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncGenerator
from contextlib import aclosing
from pathlib import Path

import anyio
import attrs
import pytest

from orchestra.backends.configured import ConfiguredBackend, Settings
from orchestra.config import Config, load_config
from orchestra.config.load import PROVIDER_KEYS
from orchestra.engine.runner import RunResult
from orchestra.llm.providers import client_from_config
from orchestra.llm.types import Message, Request, StreamEvent, StreamEventKind
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore
from orchestra.validation import Severity

pytestmark = [
    pytest.mark.real_llm,
    pytest.mark.skipif(
        os.environ.get("ORCHESTRA_REAL_LLM") != "1",
        reason="calls real providers: set ORCHESTRA_REAL_LLM=1 (and their keys) to run",
    ),
]

#: seconds before a test fails rather than waits on a provider that stopped answering
PIPELINE_TIMEOUT = 300
CALL_TIMEOUT = 60


@attrs.frozen
class Provider:
    """A provider under test and the cheap model it runs on."""

    name: str
    model: str

    @property
    def key_variable(self) -> str:
        return PROVIDER_KEYS[self.name]


PROVIDERS = (
    Provider("anthropic", os.environ.get("ORCHESTRA_REAL_LLM_ANTHROPIC_MODEL", "claude-haiku-4-5")),
    Provider("openai", os.environ.get("ORCHESTRA_REAL_LLM_OPENAI_MODEL", "gpt-5-mini")),
)

# §11.13's pipeline, nodes, edges and goal as the spec has them. The stylesheet puts every
# node on the cheap tier; the prompts ask for brevity (cost) and name the file to write, so
# that the test can check the agent really wrote it.
SMOKE_DOT = """
digraph test_pipeline {
    graph [goal="Create a hello world Python script",
           model_stylesheet="* { llm_model: cheap; }"]

    start       [shape=Mdiamond]
    plan        [shape=box,
                 prompt="Plan how to create a hello world script for: $goal. "
                      + "Answer in three short lines at most."]
    implement   [shape=box, goal_gate=true,
                 prompt="Write the code based on the plan: save it as hello.py in the "
                      + "workspace with the write_file tool. Keep your answer to one line."]
    review      [shape=box,
                 prompt="Review the code in hello.py for correctness. Answer in one sentence."]
    done        [shape=Msquare]

    start -> plan
    plan -> implement
    implement -> review [condition="outcome=success"]
    implement -> plan   [condition="outcome=fail", label="Retry"]
    review -> done      [condition="outcome=success"]
    review -> implement [condition="outcome=fail", label="Fix"]
}
"""

PING_DOT = """
digraph ping {
    graph [goal="Check that the provider answers", model_stylesheet="* { llm_model: cheap; }"]
    start  [shape=Mdiamond]
    answer [prompt="Reply with the single word pong."]
    done   [shape=Msquare]
    start -> answer -> done
}
"""

LLM_STAGES = ("plan", "implement", "review")


@pytest.fixture(params=PROVIDERS, ids=lambda provider: provider.name)
def provider(request: pytest.FixtureRequest) -> Provider:
    """Each provider in turn; skipped when its key is not in the environment."""
    chosen: Provider = request.param
    if not os.environ.get(chosen.key_variable, "").strip():
        pytest.skip(f"{chosen.key_variable} is not set: no {chosen.name} key to call it with")
    return chosen


@pytest.fixture
def config(provider: Provider, tmp_path: Path) -> Config:
    """An orchestra.yaml naming ``provider`` as the default, its model as the cheap tier."""
    path = tmp_path / "orchestra.yaml"
    path.write_text(
        f"providers:\n"
        f"  default: {provider.name}\n"
        f"  {provider.name}:\n"
        f"    models:\n"
        f"      cheap: {provider.model}\n",
        encoding="utf-8",
    )
    return load_config(path, environ=os.environ)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """The directory the agent's tools work in."""
    path = tmp_path / "workspace"
    path.mkdir()
    return path


async def run_on(
    source: str,
    backend: ConfiguredBackend,
    store: EmbeddedStore,
    logs_root: Path,
) -> tuple[Pipeline, RunResult]:
    """Load ``source`` and run it on ``backend``, closing the backend's client after."""
    pipeline = Pipeline.load(source, store=store, backend=backend, logs_root=logs_root)
    try:
        with anyio.fail_after(PIPELINE_TIMEOUT):
            return pipeline, await pipeline.run()
    finally:
        await backend.aclose()


class TestSmokePipeline:
    """§11.13: plan -> implement -> review on the agent backend, with a real model."""

    async def test_the_pipeline_runs_to_done_and_leaves_its_record(
        self,
        provider: Provider,
        config: Config,
        workspace: Path,
        store: EmbeddedStore,
        tmp_path: Path,
    ) -> None:
        """The run succeeds through every stage, each LLM stage leaves prompt.md,
        response.md and status.json, the goal gate is met, the checkpoint ends at done, the
        agent wrote hello.py in the workspace, and every stage spent tokens on the model."""
        logs_root = tmp_path / "run"
        backend = ConfiguredBackend(
            Settings(config, os.environ), default="agent", workspace=workspace
        )

        pipeline, result = await run_on(SMOKE_DOT, backend, store, logs_root)

        graph = pipeline.graph
        assert graph.goal == "Create a hello world Python script"
        assert len(graph.nodes) == 5
        assert len(graph.edges) == 6
        assert not [d for d in pipeline.diagnostics if d.severity is Severity.ERROR]

        assert result.status == "success", result.failure_reason
        assert "implement" in result.completed_nodes
        for node_id in LLM_STAGES:
            for artifact in ("prompt.md", "response.md", "status.json"):
                path = logs_root / node_id / artifact
                assert path.is_file(), f"{node_id} has no {artifact}"

        assert result.node_outcomes["implement"]["outcome"] in ("success", "partial_success")

        checkpoint = json.loads((logs_root / "checkpoint.json").read_text(encoding="utf-8"))
        assert checkpoint["current_node"] == "done"
        assert set(LLM_STAGES) <= set(checkpoint["completed_nodes"])

        script = workspace / "hello.py"
        assert script.is_file(), f"the agent wrote no hello.py; it wrote {os.listdir(workspace)}"
        assert "print" in script.read_text(encoding="utf-8")
        assert "hello.py" in result.context["agent.implement.files_written"]

        for node_id in LLM_STAGES:
            spent = result.usage[node_id]
            assert spent["model"] == f"{provider.name}/{provider.model}"
            assert spent["input_tokens"] > 0
            assert spent["output_tokens"] > 0
        assert result.usage["implement"]["tool_calls"] >= 1


class TestDirectBackend:
    async def test_one_call_answers(
        self,
        provider: Provider,
        config: Config,
        store: EmbeddedStore,
        tmp_path: Path,
    ) -> None:
        """A node on the direct backend makes one model call and gets a non-empty answer."""
        logs_root = tmp_path / "run"
        backend = ConfiguredBackend(Settings(config, os.environ), default="direct")

        _, result = await run_on(PING_DOT, backend, store, logs_root)

        assert result.status == "success", result.failure_reason
        assert result.context["last_response"].strip()
        assert (logs_root / "answer" / "response.md").read_text(encoding="utf-8").strip()
        spent = result.usage["answer"]
        assert spent["model"] == f"{provider.name}/{provider.model}"
        assert spent["model_calls"] == 1
        assert spent["input_tokens"] > 0
        assert spent["output_tokens"] > 0


class TestStreaming:
    async def test_the_stream_ends_with_the_whole_response(
        self, provider: Provider, config: Config
    ) -> None:
        """Client.stream yields text deltas and ends with FINISH, whose response holds the
        text the deltas add up to, from the configured model, with its usage."""
        client = client_from_config(config, os.environ)
        request = Request(
            model=provider.model,
            messages=(Message.user("Say hello in three words."),),
            provider=provider.name,
        )
        try:
            with anyio.fail_after(CALL_TIMEOUT):
                events = await collect(client.stream(request))
        finally:
            await client.close()

        finish = events[-1]
        assert finish.kind is StreamEventKind.FINISH
        assert finish.response is not None
        assert finish.response.provider == provider.name
        assert finish.response.text.strip()
        deltas = [e.delta for e in events if e.kind is StreamEventKind.TEXT_DELTA]
        assert "".join(deltas) == finish.response.text
        assert finish.response.usage.input_tokens > 0
        assert finish.response.usage.output_tokens > 0


async def collect(stream: AsyncGenerator[StreamEvent, None]) -> list[StreamEvent]:
    """Every event of ``stream``, closing it however the loop ends."""
    async with aclosing(stream) as events:
        return [event async for event in events]
