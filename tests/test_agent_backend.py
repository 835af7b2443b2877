"""The `agent` backend in a pipeline: a scripted model, the real tools, the real store."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from orchestra.backends.agent import AgentBackend, outcome_from_answer
from orchestra.config import Config, ProviderConfig, Providers
from orchestra.engine.session import load_session
from orchestra.llm.client import Client
from orchestra.llm.errors import AuthenticationError
from orchestra.llm.types import (
    Response,
    Role,
    ToolCall,
    Usage,
)
from orchestra.outcome import StageStatus
from orchestra.pipeline import Pipeline, resume
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import ScriptedModel, Step, model_calls, model_says

PIPELINE = """
digraph build {
    graph [goal="write the notes"]
    start [shape=Mdiamond]
    work  [prompt="Write notes.txt about $goal", llm_model="worker"]
    after [shape=parallelogram, tool_command="true"]
    redo  [shape=parallelogram, tool_command="true"]
    exit  [shape=Msquare]
    start -> work
    work -> after [label="Done"]
    work -> redo  [label="Again"]
    after -> exit
    redo -> exit
}
"""

CONFIG = Config(
    backend="agent",
    providers=Providers(
        default="anthropic",
        by_name={"anthropic": ProviderConfig(models={"worker": "claude-sonnet-4-5"})},
    ),
)


def says(text: str) -> Response:
    return model_says(text, usage=Usage(1000, 200), model="claude-sonnet-4-5", provider="anthropic")


def calls(*tool_calls: ToolCall) -> Response:
    return model_calls(
        *tool_calls, usage=Usage(500, 100), model="claude-sonnet-4-5", provider="anthropic"
    )


def anthropic(*script: Step) -> ScriptedModel:
    return ScriptedModel(script, name="anthropic")


WRITE = ToolCall("c1", "write_file", {"file_path": "notes.txt", "content": "v1"})


def load(model: ScriptedModel, tmp_path: Path, store: EmbeddedStore) -> Pipeline:
    backend = AgentBackend(CONFIG, Client({"anthropic": model}), workspace=tmp_path / "ws")
    (tmp_path / "ws").mkdir(exist_ok=True)
    return Pipeline.load(PIPELINE, store=store, backend=backend, logs_root=tmp_path / "run")


class TestAgentNode:
    async def test_node_writes_files_routes_by_status_and_records_usage(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """The scripted model writes a file through the tools and ends with a status block
        preferring 'Again': the file is in the workspace, the run takes that edge, and the
        node's tokens and cost are in the context."""
        status = '```status\n{"outcome": "success", "preferred_label": "Again"}\n```'
        model = ScriptedModel(
            name="anthropic", script=[calls(WRITE), says(f"Notes written.\n{status}")]
        )

        result = await load(model, tmp_path, store).run()

        assert result.succeeded
        assert (tmp_path / "ws" / "notes.txt").read_text() == "v1"
        assert "redo" in result.completed_nodes
        assert "after" not in result.completed_nodes
        assert result.context["usage.work.input_tokens"] == 1500
        assert result.context["usage.work.output_tokens"] == 300
        assert result.context["usage.work.cost_usd"] > 0
        assert result.context["last_response"] == "Notes written."
        first = model.requests[0]
        assert first.model == "claude-sonnet-4-5"
        assert "write the notes" in first.messages[-1].text
        assert "```status" in first.messages[0].text
        response = (tmp_path / "run" / "work" / "response.md").read_text()
        assert response == "Notes written."

    async def test_resumed_node_continues_without_calling_its_tools_again(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """A run stopped after the node's tool call (as by a crash) resumes from the
        recorded turns: the tool does not run again and the model sees the whole history."""
        scope = anyio.CancelScope()
        first = anthropic(calls(WRITE), scope.cancel)
        pipeline = load(first, tmp_path, store)
        with scope:
            await pipeline.run()
        assert pipeline.session_id is not None
        (tmp_path / "ws" / "notes.txt").write_text("edited by hand")

        second = anthropic(says("Done, carrying on."))
        backend = AgentBackend(CONFIG, Client({"anthropic": second}), workspace=tmp_path / "ws")
        resumed = await resume(pipeline.session_id, store=store, backend=backend)

        assert resumed.succeeded
        assert (tmp_path / "ws" / "notes.txt").read_text() == "edited by hand"
        roles = [m.role for m in second.requests[0].messages]
        assert roles == [Role.SYSTEM, Role.USER, Role.ASSISTANT, Role.TOOL]
        state = await load_session(store, pipeline.session_id)
        assert state.ended == "success"

    async def test_authentication_error_fails_the_node_at_once(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """An error retrying cannot fix fails the node without retries, naming the model."""
        model = ScriptedModel(
            name="anthropic",
            script=[AuthenticationError("invalid x-api-key", provider="anthropic")],
        )
        result = await load(model, tmp_path, store).run()
        assert not result.succeeded
        assert "anthropic/claude-sonnet-4-5: invalid x-api-key" in result.failure_reason

    async def test_unknown_agent_is_a_clear_failure(
        self, tmp_path: Path, store: EmbeddedStore
    ) -> None:
        """agent= naming an agent orchestra.yaml lacks fails the node, listing the agents."""
        source = PIPELINE.replace('llm_model="worker"', 'agent="critic"')
        backend = AgentBackend(CONFIG, Client({"anthropic": anthropic()}))
        result = await Pipeline.load(source, store=store, backend=backend, logs_root=tmp_path).run()
        assert "agent 'critic' is not in orchestra.yaml" in result.failure_reason


class TestStatusBlock:
    def test_last_block_decides_and_is_removed_from_the_answer(self) -> None:
        """The last status block gives outcome, label, updates and notes."""
        block = '{"outcome": "retry", "notes": "flaky", "context_updates": {"k": 1}}'
        text = f"Tried.\n```status\n{block}\n```"
        answer, outcome = outcome_from_answer("n", text)
        assert answer == "Tried."
        assert outcome is not None
        assert (outcome.status, outcome.notes, dict(outcome.context_updates)) == (
            StageStatus.RETRY,
            "flaky",
            {"k": 1},
        )

    @pytest.mark.parametrize("text", ["no block at all", "```status\nnot json\n```"])
    def test_no_usable_block_leaves_the_outcome_to_the_default(self, text: str) -> None:
        """Without a parseable block the backend falls back to success with the text."""
        assert outcome_from_answer("n", text)[1] is None
