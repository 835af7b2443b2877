"""An answer cut off at the model's output limit is never taken as complete: it is
continued and joined, or the node fails saying so (issue 15, fault 11)."""

from __future__ import annotations

from pathlib import Path

from orchestra.agent.session import CONTINUE
from orchestra.backends.agent import AgentBackend
from orchestra.backends.direct import DirectBackend
from orchestra.config import Config, ProviderConfig, Providers
from orchestra.llm.client import Client
from orchestra.llm.types import FinishReason, Message, Response, Role, Usage
from orchestra.pipeline import Pipeline
from orchestra.store.embedded import EmbeddedStore
from orchestra.testing import ScriptedModel, model_says

CONFIG = Config(
    backend="agent",
    providers=Providers(
        default="anthropic",
        by_name={"anthropic": ProviderConfig(models={"worker": "claude-sonnet-4-6"})},
    ),
)

PIPELINE = """
digraph g {{
    start [shape=Mdiamond]; exit [shape=Msquare]
    write [prompt="Write the essay", llm_model="worker" {extra}]
    start -> write -> exit
}}
"""


def cut(text: str) -> Response:
    return Response(
        "r", "m", "anthropic", Message.assistant(text), FinishReason("length"), Usage(10, 5)
    )


def says(text: str) -> Response:
    return model_says(text, provider="anthropic")


def backend(kind: str, model: ScriptedModel, tmp_path: Path) -> AgentBackend | DirectBackend:
    client = Client({"anthropic": model})
    if kind == "direct":
        return DirectBackend(CONFIG, client)
    (tmp_path / "ws").mkdir(parents=True, exist_ok=True)
    return AgentBackend(CONFIG, client, workspace=tmp_path / "ws")


async def run(
    kind: str, model: ScriptedModel, tmp_path: Path, store: EmbeddedStore, extra: str = ""
) -> object:
    pipeline = Pipeline.load(
        PIPELINE.format(extra=extra),
        store=store,
        backend=backend(kind, model, tmp_path),
        logs_root=tmp_path / "run",
    )
    return await pipeline.run()


async def test_a_cut_off_answer_is_continued_and_joined(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    for kind in ("agent", "direct"):
        model = ScriptedModel([cut("Part one, "), says("part two.")], name="anthropic")
        result = await run(kind, model, tmp_path / kind, store, ', "llm.max_tokens"=500')
        assert result.succeeded, (kind, result.failure_reason)
        assert (
            tmp_path / kind / "run" / "write" / "response.md"
        ).read_text() == "Part one, part two."
        second = model.requests[1]
        assert [m.role for m in second.messages[-2:]] == [Role.ASSISTANT, Role.USER]
        assert second.messages[-1].text == CONTINUE
        assert {request.max_tokens for request in model.requests} == {500}
        assert result.context["usage.write.output_tokens"] == 10


async def test_with_on_truncation_fail_the_node_fails(tmp_path: Path, store: EmbeddedStore) -> None:
    for kind in ("agent", "direct"):
        model = ScriptedModel([cut("Part one, ")], name="anthropic")
        extra = ', "agent.on_truncation"="fail", "llm.max_tokens"=64'
        result = await run(kind, model, tmp_path / kind, store, extra)
        assert not result.succeeded
        assert "cut off at its output limit (64 tokens)" in result.failure_reason
        assert len(model.requests) == 1


async def test_an_answer_still_cut_off_after_three_continuations_fails(
    tmp_path: Path, store: EmbeddedStore
) -> None:
    for kind in ("agent", "direct"):
        model = ScriptedModel([cut("a"), cut("b"), cut("c"), cut("d")], name="anthropic")
        result = await run(kind, model, tmp_path / kind, store)
        assert not result.succeeded
        assert "cut off" in result.failure_reason
        assert len(model.requests) == 4
