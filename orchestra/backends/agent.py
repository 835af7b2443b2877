"""The ``agent`` backend: a codergen node run by Orchestra's own tool loop.

For each node: the agent named by ``agent=`` (``orchestra.yaml``), the model resolved from
the node, the agent and the provider tiers, the prompt composed from the agent's layers, and
an ``AgentSession`` whose file tools are confined to the workspace (the working directory,
or ``workspace=`` on the node). Every message of the conversation and every tool result is
recorded in the session's store as it happens, so a node resumed after a crash continues
from its recorded turns: it does not call those tools again.

The model decides the node's outcome with a status block at the end of its answer (see
``STATUS_CONTRACT``); without one, the node succeeds with the text. Token usage and cost go
into the context as ``usage.NODE.*``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from orchestra.agent.session import AgentResult, AgentSession, ModelTurn, ToolTurn
from orchestra.agent.tools import ToolOutput, Toolset, Workspace
from orchestra.config import Config, resolve_model
from orchestra.engine.context import Context
from orchestra.errors import ConfigError
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.llm.client import Client
from orchestra.llm.errors import LLMError
from orchestra.llm.pricing import Prices, load_prices
from orchestra.llm.serialize import message_from_data, message_to_data
from orchestra.llm.types import Message
from orchestra.outcome import Outcome, StageStatus
from orchestra.prompts import compose_agent_prompt

__all__ = ["STATUS_CONTRACT", "AgentBackend", "outcome_from_answer"]

DEFAULT_SYSTEM = (
    "You are a careful software engineer working in a repository. Use the tools to read "
    "before you change anything, make the smallest change that does the task, and check "
    "your work by running it."
)

STATUS_CONTRACT = """\
When you are done, end your answer with a status block, exactly in this form:

```status
{"outcome": "success", "preferred_label": "", "context_updates": {}, "notes": "one line"}
```

outcome is "success" when the task is done, "fail" when it cannot be done, "retry" when a \
new attempt could succeed. preferred_label names the edge to take next when the pipeline \
offers a choice; context_updates are string keys and values for later stages."""

_STATUS_BLOCK = re.compile(r"```status\s*\n(.*?)```", re.DOTALL)
_LAST_RESPONSE_CHARS = 200
#: kinds of what the backend records for a node, per execution
_MESSAGES = "agent.messages"
_TOOLS = "agent.tools"


def outcome_from_answer(node_id: str, text: str) -> tuple[str, Outcome | None]:
    """The answer without its status block, and the outcome the block states (None when
    there is no block, or it does not parse: the node then succeeds with the text)."""
    blocks = list(_STATUS_BLOCK.finditer(text))
    if not blocks:
        return text, None
    block = blocks[-1]
    answer = (text[: block.start()] + text[block.end() :]).strip()
    try:
        data = json.loads(block.group(1))
        status = StageStatus.parse(str(data.get("outcome", "success")))
    except (ValueError, AttributeError):
        return answer, None
    updates = data.get("context_updates") or {}
    if not isinstance(updates, dict):
        updates = {}
    notes = str(data.get("notes") or f"stage completed: {node_id}")
    return answer, Outcome(
        status,
        preferred_label=str(data.get("preferred_label") or ""),
        context_updates={str(k): v for k, v in updates.items()},
        notes=notes,
        failure_reason="" if status.is_success else notes,
    )


class AgentBackend:
    name = "agent"

    def __init__(
        self,
        config: Config,
        client: Client,
        *,
        workspace: Path | None = None,
        prices: Prices | None = None,
        max_model_calls: int = 50,
    ) -> None:
        self.config = config
        self.client = client
        self.workspace = workspace
        self.prices = prices if prices is not None else load_prices(config.prices)
        self.max_model_calls = max_model_calls

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome:
        agent_name = str(node.attrs.get("agent") or "")
        agent = self.config.agents.get(agent_name) if agent_name else None
        if agent_name and agent is None:
            names = ", ".join(sorted(self.config.agents)) or "none"
            raise TerminalError(
                f"node '{node.id}': agent '{agent_name}' is not in orchestra.yaml (agents: {names})"
            )
        try:
            resolved = resolve_model(
                node.llm_model or None, node.llm_provider or None, agent, self.config
            )
            if agent is not None:
                composed = compose_agent_prompt(
                    agent,
                    variables=stage.variables,
                    context=context.as_mapping(),
                    node_prompt=prompt,
                )
                system, user = composed.system, composed.user
            else:
                system, user = DEFAULT_SYSTEM, prompt
        except ConfigError as err:
            raise TerminalError(f"node '{node.id}': {err}") from None
        session = AgentSession(
            client=self.client,
            model=resolved.model,
            provider=resolved.provider,
            system=f"{system}\n\n{STATUS_CONTRACT}",
            toolset=self._toolset(node),
            reasoning_effort=(
                str(node.attrs["reasoning_effort"])
                if "reasoning_effort" in node.attrs
                else (agent.reasoning_effort if agent is not None else None)
            ),
            max_model_calls=_int(node.attrs.get("agent.max_turns"), self.max_model_calls),
        )
        recorder = _Recorder(stage, session)
        history, known = recorder.recorded()
        session.history = history
        session.on_turn = recorder.turn
        try:
            if history:
                result = await session.run(None, known_results=known)
            else:
                session.history.append(Message.user(user))
                await recorder.flush()
                result = await session.run(None)
        except LLMError as err:
            if err.retryable:
                return Outcome(
                    StageStatus.RETRY,
                    failure_reason=f"{resolved.provider}: {err.message}",
                    notes="the model could not be reached; the node may be retried",
                )
            raise TerminalError(f"{resolved.provider}/{resolved.model}: {err.message}") from None
        await recorder.flush()
        return self._outcome(node, result, resolved.provider, resolved.model)

    def _toolset(self, node: Node) -> Toolset:
        root = Path(str(node.attrs.get("workspace") or self.workspace or Path.cwd()))
        timeout = self.config.tools.shell_timeout or 10.0
        return Toolset(Workspace(root.resolve()), shell_timeout=timeout)

    def _outcome(self, node: Node, result: AgentResult, provider: str, model: str) -> Outcome:
        answer, stated = outcome_from_answer(node.id, result.text)
        usage = result.usage
        cost = self.prices.cost(model, usage, provider=provider)
        updates: dict[str, Any] = {
            "last_stage": node.id,
            "last_response": answer[:_LAST_RESPONSE_CHARS],
            f"usage.{node.id}.model": f"{provider}/{model}",
            f"usage.{node.id}.input_tokens": usage.input_tokens,
            f"usage.{node.id}.output_tokens": usage.output_tokens,
            f"usage.{node.id}.model_calls": result.model_calls,
            f"usage.{node.id}.tool_calls": result.tool_calls,
        }
        if cost is not None:
            updates[f"usage.{node.id}.cost_usd"] = round(cost, 6)
        if result.files_written:
            updates[f"agent.{node.id}.files_written"] = list(result.files_written)
        if result.stopped == "turn_limit":
            return Outcome(
                StageStatus.FAIL,
                failure_reason=f"the agent used its {result.model_calls} model calls "
                "without finishing (raise agent.max_turns on the node)",
                context_updates=updates,
            )
        if stated is None:
            return Outcome.success(f"stage completed: {node.id}", context_updates=updates)
        return Outcome(
            stated.status,
            preferred_label=stated.preferred_label,
            context_updates={**updates, **stated.context_updates},
            notes=stated.notes,
            failure_reason=stated.failure_reason,
        )


class _Recorder:
    """Keeps the conversation durable: every message the session adds, and every tool
    output as it completes, for this execution of the node."""

    def __init__(self, stage: StageRun, session: AgentSession) -> None:
        self.stage = stage
        self.session = session
        self.prefix = f"{stage.execution}:"
        self.saved = 0

    def recorded(self) -> tuple[list[Message], dict[str, ToolOutput]]:
        messages = self.stage.recorded.get(_MESSAGES, {})
        keys = sorted(k for k in messages if k.startswith(self.prefix))
        history = [message_from_data(messages[k]) for k in keys]
        self.saved = len(history)
        tools = self.stage.recorded.get(_TOOLS, {})
        known = {
            key[len(self.prefix) :]: ToolOutput(
                str(data.get("text", "")),
                bool(data.get("is_error")),
                str(data.get("text", "")),
                tuple(data.get("files_written") or ()),
            )
            for key, data in tools.items()
            if key.startswith(self.prefix)
        }
        return history, known

    async def turn(self, turn: ModelTurn | ToolTurn) -> None:
        if isinstance(turn, ToolTurn):
            if self.stage.record is not None:
                output = turn.output
                await self.stage.record(
                    _TOOLS,
                    {
                        f"{self.prefix}{turn.call.id}": {
                            "name": turn.call.name,
                            "text": output.text,
                            "is_error": output.is_error,
                            "files_written": list(output.files_written),
                        }
                    },
                )
            return
        await self.flush()

    async def flush(self) -> None:
        """Record the messages added since the last flush."""
        history = self.session.history
        if self.stage.record is None or self.saved >= len(history):
            self.saved = len(history)
            return
        entries = {
            f"{self.prefix}{index:05d}": message_to_data(history[index])
            for index in range(self.saved, len(history))
        }
        await self.stage.record(_MESSAGES, entries)
        self.saved = len(history)


def _int(value: Any, default: int) -> int:
    try:
        return max(int(str(value)), 1) if value is not None else default
    except ValueError:
        return default
