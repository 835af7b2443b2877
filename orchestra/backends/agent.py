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
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from orchestra.agent.hooks import TOOL_HOOKS_LOG, ToolCallHooks, hook_commands
from orchestra.agent.session import AgentResult, AgentSession, ModelTurn, ToolTurn
from orchestra.agent.tools import Tool, ToolOutput, Toolset, Workspace, repo_tool
from orchestra.backends.base import StageReply
from orchestra.backends.chat import CHAT_CONTRACT, ChatLine, chat_messages
from orchestra.backends.threads import Opening, Threads
from orchestra.backends.workdir import node_workspace, relative_to
from orchestra.config import Config, resolve_model
from orchestra.engine.context import Context
from orchestra.errors import ConfigError
from orchestra.events import StageActivity
from orchestra.graph import Node
from orchestra.handlers.base import StageRun, TerminalError
from orchestra.llm.client import Client
from orchestra.llm.errors import LLMError
from orchestra.llm.pricing import Prices, load_prices
from orchestra.llm.serialize import (
    message_from_data,
    message_to_data,
    usage_from_data,
    usage_to_data,
)
from orchestra.llm.types import Message, Usage
from orchestra.outcome import Outcome, StageStatus
from orchestra.prompts import compose_agent_prompt

__all__ = [
    "STATUS_CONTRACT",
    "AgentBackend",
    "PreparedCall",
    "Spent",
    "answer_outcome",
    "describe_record",
    "outcome_for_error",
    "outcome_from_answer",
    "prepare_call",
    "usage_updates",
    "write_opening",
]

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
_USAGE = "agent.usage"


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


@attrs.frozen
class PreparedCall:
    """What a node asks of a model: resolved model, composed prompt, reasoning effort."""

    provider: str
    model: str
    #: the system prompt, status contract included
    system: str
    user: str
    reasoning_effort: str | None


def prepare_call(
    config: Config,
    node: Node,
    prompt: str,
    context: Context,
    stage: StageRun,
    *,
    contract: str = STATUS_CONTRACT,
) -> PreparedCall:
    """Resolve the node's model (node, then agent, then provider default) and compose its
    prompt from the agent's layers, or the default system prompt when it names no agent;
    ``contract`` (how to state the outcome) ends the system prompt. A mistake in either is
    a ``TerminalError``: retrying cannot fix configuration."""
    agent_name = str(node.attrs.get("agent") or "")
    agent = config.agents.get(agent_name) if agent_name else None
    if agent_name and agent is None:
        names = ", ".join(sorted(config.agents)) or "none"
        raise TerminalError(
            f"node '{node.id}': agent '{agent_name}' is not in orchestra.yaml (agents: {names})"
        )
    try:
        resolved = resolve_model(node.llm_model or None, node.llm_provider or None, agent, config)
        if agent is not None:
            composed = compose_agent_prompt(
                agent, variables=stage.variables, context=context.as_mapping(), node_prompt=prompt
            )
            system, user = composed.system, composed.user
        else:
            system, user = DEFAULT_SYSTEM, prompt
    except ConfigError as err:
        raise TerminalError(f"node '{node.id}': {err}") from None
    if "reasoning_effort" in node.attrs:
        effort: str | None = str(node.attrs["reasoning_effort"])
    else:
        effort = agent.reasoning_effort if agent is not None else None
    return PreparedCall(resolved.provider, resolved.model, f"{system}\n\n{contract}", user, effort)


def outcome_for_error(err: LLMError, call: PreparedCall) -> Outcome:
    """A retryable error (rate limit, overload, network) is a RETRY outcome, left to the
    node's retry policy; any other fails the node at once."""
    if err.retryable:
        return Outcome(
            StageStatus.RETRY,
            failure_reason=f"{call.provider}: {err.message}",
            notes="the model could not be reached; the node may be retried",
        )
    raise TerminalError(f"{call.provider}/{call.model}: {err.message}") from None


@attrs.frozen
class Spent:
    """What a node's model calls used, for ``usage.NODE.*`` in the context."""

    usage: Usage = attrs.field(factory=Usage)
    model_calls: int = 0
    tool_calls: int = 0
    files_written: tuple[str, ...] = ()

    def __add__(self, other: Spent) -> Spent:
        return Spent(
            self.usage + other.usage,
            self.model_calls + other.model_calls,
            self.tool_calls + other.tool_calls,
            tuple(dict.fromkeys((*self.files_written, *other.files_written))),
        )


def usage_updates(node_id: str, call: PreparedCall, spent: Spent, prices: Prices) -> dict[str, Any]:
    """``usage.NODE.*``: model, tokens, calls and (when the model's price is known) cost."""
    usage = spent.usage
    updates: dict[str, Any] = {
        f"usage.{node_id}.model": f"{call.provider}/{call.model}",
        f"usage.{node_id}.input_tokens": usage.input_tokens,
        f"usage.{node_id}.output_tokens": usage.output_tokens,
        f"usage.{node_id}.model_calls": spent.model_calls,
        f"usage.{node_id}.tool_calls": spent.tool_calls,
    }
    if usage.cache_read_tokens:
        updates[f"usage.{node_id}.cache_read_tokens"] = usage.cache_read_tokens
    cost = prices.cost(call.model, usage, provider=call.provider)
    if cost is not None:
        updates[f"usage.{node_id}.cost_usd"] = round(cost, 6)
    return updates


def write_opening(stage: StageRun, opening: Opening) -> None:
    """``conversation.md`` in the stage directory: what the model is sent first, preamble
    and all (``prompt.md`` holds the node's prompt alone)."""
    stage.stage_dir.mkdir(parents=True, exist_ok=True)
    lines = [f"<!-- fidelity: {opening.fidelity} -->"]
    for message in opening.messages:
        lines.append(f"## {message.role.value}\n\n{message.text}")
    (stage.stage_dir / "conversation.md").write_text("\n\n".join(lines) + "\n", encoding="utf-8")


def answer_outcome(node_id: str, text: str, updates: Mapping[str, Any]) -> StageReply:
    """The node's outcome from the model's final answer: its status block if it has one,
    else success; ``updates`` (usage and the like) go into the context either way. The
    reply's text is the answer without its status block."""
    answer, stated = outcome_from_answer(node_id, text)
    updates = {
        "last_stage": node_id,
        "last_response": answer[:_LAST_RESPONSE_CHARS],
        **updates,
    }
    if stated is None:
        return StageReply(
            answer, Outcome.success(f"stage completed: {node_id}", context_updates=updates)
        )
    outcome = Outcome(
        stated.status,
        preferred_label=stated.preferred_label,
        context_updates={**updates, **stated.context_updates},
        notes=stated.notes,
        failure_reason=stated.failure_reason,
    )
    return StageReply(answer, outcome, stated=True)


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
        threads: Threads | None = None,
    ) -> None:
        self.config = config
        self.client = client
        self.workspace = workspace
        self.prices = prices if prices is not None else load_prices(config.prices)
        self.max_model_calls = max_model_calls
        #: the conversations of full-fidelity threads (shared with a direct backend)
        self.threads = threads if threads is not None else Threads()

    async def run(
        self, node: Node, prompt: str, context: Context, stage: StageRun
    ) -> str | Outcome | StageReply:
        call = prepare_call(self.config, node, prompt, context, stage)
        return await self._converse(node, call, context, stage, ())

    async def chat(
        self, node: Node, prompt: str, context: Context, stage: StageRun, lines: Sequence[ChatLine]
    ) -> Outcome | StageReply:
        """The agent's reply ``stage.call`` in a chat: the conversation so far (every
        earlier reply's messages, tool calls included, as recorded), the person's last
        message, then the tool loop until the agent answers. Usage is this reply's own."""
        call = prepare_call(self.config, node, prompt, context, stage, contract=CHAT_CONTRACT)
        return await self._converse(node, call, context, stage, lines)

    async def _converse(
        self,
        node: Node,
        call: PreparedCall,
        context: Context,
        stage: StageRun,
        lines: Sequence[ChatLine],
    ) -> Outcome | StageReply:
        """The tool loop of this call: from the opening (a node's one call, a chat's first
        reply), from the chat so far and the person's last message (a later reply), or
        on from what this call recorded before a crash, without calling its tools again."""
        session, recorder = self._session(node, stage, context, call)
        before = recorder.earlier_replies() if stage.call > 1 else []
        if stage.call > 1 and not before:  # nothing recorded (no store): from the lines
            before = chat_messages((Message.user(call.user),), lines[:-1])
        recorder.saved = len(before)
        mine, known, earlier = recorder.recorded()
        opening = self.threads.opening(node, call.user, context, stage)
        try:
            if mine:  # resumed mid-call
                session.history = [*before, *mine]
                result = await session.run(None, known_results=known)
            else:
                if stage.call > 1:  # the person's message, durable before the model is asked
                    session.history = [*before, Message.user(lines[-1].text)]
                else:
                    session.history = list(opening.messages)
                    write_opening(stage, opening)
                await recorder.flush()
                result = await session.run(None)
        except LLMError as err:
            return outcome_for_error(err, call)
        await recorder.flush()
        self.threads.keep(opening, node, stage, session.history)
        spent = earlier + Spent(
            result.usage, result.model_calls, result.tool_calls, result.files_written
        )
        return self._outcome(node, result, call, spent)

    def _session(
        self, node: Node, stage: StageRun, context: Context, call: PreparedCall
    ) -> tuple[AgentSession, _Recorder]:
        session = AgentSession(
            client=self.client,
            model=call.model,
            provider=call.provider,
            system=call.system,
            toolset=self._toolset(node, stage, context),
            reasoning_effort=call.reasoning_effort,
            max_model_calls=_int(node.attrs.get("agent.max_turns"), self.max_model_calls),
            max_tokens=max_tokens(node),
            on_truncation=on_truncation(node),
        )
        recorder = _Recorder(
            stage,
            session,
            node.id,
            session.toolset.workspace.root,
            f"{call.provider}/{call.model}",
        )
        session.on_turn = recorder.turn
        return session, recorder

    def _toolset(self, node: Node, stage: StageRun, context: Context) -> Toolset:
        root = node_workspace(node, stage, self.workspace, context)
        if not root.is_dir():
            raise TerminalError(f"node '{node.id}': workspace {root} is not a directory")
        timeout = self.config.tools.shell_timeout or 10.0
        commands = hook_commands(node.attrs, node.graph_attrs, self.config.tools.hooks)
        hooks = None
        if commands.pre or commands.post:
            hooks = ToolCallHooks(
                commands,
                node_id=node.id,
                stage_dir=stage.stage_dir,
                log_path=stage.stage_dir / TOOL_HOOKS_LOG,
            )
        extra: list[Tool] = []
        if stage.workspace is not None:
            worktrees = stage.workspace.worktrees
            for repo, offered in stage.workspace.tools.items():
                for name, command in offered.items():
                    extra.append(
                        repo_tool(f"{repo}__{name}", command, worktrees[repo], timeout, repo)
                    )
        only = tool_names(node)
        try:
            return Toolset(
                Workspace(root), shell_timeout=timeout, hooks=hooks, extra=extra, only=only
            )
        except ValueError as err:
            raise TerminalError(f"node '{node.id}' agent.tools: {err}") from None

    def _outcome(
        self, node: Node, result: AgentResult, call: PreparedCall, spent: Spent
    ) -> Outcome | StageReply:
        updates = usage_updates(node.id, call, spent, self.prices)
        if spent.files_written:
            updates[f"agent.{node.id}.files_written"] = list(spent.files_written)
        if result.stopped == "truncated":
            return truncated_outcome(node, updates)
        if result.stopped == "turn_limit":
            return Outcome(
                StageStatus.FAIL,
                failure_reason=f"the agent used its {result.model_calls} model calls "
                "without finishing (raise agent.max_turns on the node)",
                context_updates=updates,
            )
        return answer_outcome(node.id, result.text, updates)


class _Recorder:
    """Keeps the conversation durable: every message the session adds, the usage of every
    model call, and every tool output as it completes, for this execution of the node."""

    def __init__(
        self, stage: StageRun, session: AgentSession, node_id: str, root: Path, model: str
    ) -> None:
        self.stage = stage
        self.node_id = node_id
        self.session = session
        #: the agent's workspace root, and its model for commits' authors
        self.root = root
        self.model = model
        self.prefix = f"{stage.key}:"
        self.saved = 0

    def _mine(self, kind: str) -> dict[str, Any]:
        entries = self.stage.recorded.get(kind, {})
        return {
            key[len(self.prefix) :]: data
            for key, data in entries.items()
            if key.startswith(self.prefix)
        }

    def earlier_replies(self) -> list[Message]:
        """In a chat, the messages the agent's earlier replies recorded, in order."""
        entries = self.stage.recorded.get(_MESSAGES, {})
        visit, call = self.stage.visit, self.stage.call
        found: list[tuple[int, str, Mapping[str, Any]]] = []
        for key, data in entries.items():
            owner, _, index = key.partition(":")
            made_in, _, reply = owner.partition(".")
            if made_in == str(visit) and reply.isdigit() and 0 < int(reply) < call:
                found.append((int(reply), index, data))
        return [message_from_data(data) for _, _, data in sorted(found, key=lambda f: f[:2])]

    def recorded(self) -> tuple[list[Message], dict[str, ToolOutput], Spent]:
        """This call's conversation so far (after ``saved`` messages of earlier replies in
        a chat), the tool outputs by call id, and what it spent."""
        messages = self._mine(_MESSAGES)
        history = [message_from_data(messages[k]) for k in sorted(messages)]
        self.saved += len(history)
        known = {
            call_id: ToolOutput(
                str(data.get("text", "")),
                bool(data.get("is_error")),
                str(data.get("text", "")),
                tuple(data.get("files_written") or ()),
            )
            for call_id, data in self._mine(_TOOLS).items()
        }
        usages = self._mine(_USAGE)
        total = Usage()
        for key in sorted(usages):
            total = total + usage_from_data(usages[key])
        written = tuple(dict.fromkeys(f for output in known.values() for f in output.files_written))
        return history, known, Spent(total, len(usages), len(known), written)

    async def turn(self, turn: ModelTurn | ToolTurn) -> None:
        record = self.stage.record
        if isinstance(turn, ToolTurn):
            output = turn.output
            # Committed before the call is recorded: the commit's head goes into the same
            # turn, so a resume never holds a recorded call whose files are not committed.
            await self._commit(turn)
            if record is not None:
                entry = {
                    "name": turn.call.name,
                    "text": output.text,
                    "is_error": output.is_error,
                    "files_written": list(output.files_written),
                }
                await record(_TOOLS, {f"{self.prefix}{turn.call.id}": entry})
            await self.stage.emit(
                StageActivity(
                    session_id=self.stage.session_id,
                    node_id=self.node_id,
                    text=_activity(turn),
                    branch=self.stage.branch,
                )
            )
            return
        if record is not None:
            usage = usage_to_data(turn.response.usage)
            await record(_USAGE, {f"{self.prefix}{len(self.session.history):05d}": usage})
        await self.flush()

    async def _commit(self, turn: ToolTurn) -> None:
        workspace = self.stage.workspace
        if workspace is None:
            return
        runs_commands = turn.call.name == "shell" or "__" in turn.call.name
        if not turn.output.files_written and not runs_commands:
            return
        paths = [
            relative_to(self.root / written, workspace.root)
            for written in turn.output.files_written
        ]
        await workspace.commit(
            [p for p in paths if p is not None],
            model=self.model,
            turn=f"{self.stage.key}.{turn.index}",
            untracked=runs_commands,
        )

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


def max_tokens(node: Node) -> int | None:
    """``llm.max_tokens`` on the node (or the graph): the output limit of each model call."""
    given = node.attrs.get("llm.max_tokens", node.graph_attrs.get("llm.max_tokens"))
    return _int(given, 0) if given is not None else None


def on_truncation(node: Node) -> str:
    """``agent.on_truncation``: "continue" (the default) or "fail"."""
    given = str(node.attrs.get("agent.on_truncation") or "continue").strip().lower()
    if given not in ("continue", "fail"):
        raise TerminalError(
            f"node '{node.id}': agent.on_truncation is 'continue' or 'fail', not {given!r}"
        )
    return given


def truncated_outcome(node: Node, updates: Mapping[str, Any]) -> Outcome:
    """The node's answer hit the model's output limit: never taken as complete."""
    limit = max_tokens(node)
    shown = f" ({limit} tokens)" if limit else ""
    return Outcome(
        StageStatus.FAIL,
        failure_reason=f"the model's answer was cut off at its output limit{shown}: raise "
        'llm.max_tokens on the node, or let it continue (agent.on_truncation="continue")',
        context_updates=dict(updates),
    )


def tool_names(node: Node) -> list[str] | None:
    """``agent.tools="read_file, grep, glob"``: the only tools the node's agent gets."""
    given = str(node.attrs.get("agent.tools") or "").replace(",", " ").split()
    return given or None


def _activity(turn: ToolTurn) -> str:
    """``write_file notes.txt``, ``shell pytest -q (error)``: a tool call in a few words."""
    arguments = turn.call.arguments
    shown = ""
    if isinstance(arguments, Mapping):
        for key in ("file_path", "command", "pattern", "path"):
            if isinstance(arguments.get(key), str):
                shown = " ".join(str(arguments[key]).split())
                break
    if len(shown) > 60:
        shown = shown[:59] + "…"
    return f"{turn.call.name} {shown}".rstrip() + (" (error)" if turn.output.is_error else "")


def describe_record(kind: str, entries: Mapping[str, Any]) -> str | None:
    """One line on a turn the agent recorded, for ``orchestra status --detail``; None for
    the kinds not worth a line (usage)."""
    if kind == _TOOLS:
        return "; ".join(
            f"tool {data.get('name', '?')}" + (" (error)" if data.get("is_error") else "")
            for data in entries.values()
        )
    if kind == _MESSAGES:
        said = []
        for key in sorted(entries):
            data = entries[key]
            parts = data.get("content") or ()
            calls = [p["tool_call"]["name"] for p in parts if p.get("tool_call")]
            text = " ".join(str(p.get("text") or "") for p in parts).strip()
            if data.get("role") == "assistant":
                said.append(f"model asks {', '.join(calls)}" if calls else f"model: {text[:40]}")
            elif any(p.get("tool_result") for p in parts):
                said.append("tool results")
            else:
                said.append("prompt")
        return "; ".join(said)
    if kind == _USAGE:
        return None
    if kind == "chat":  # a chat node's messages (orchestra.handlers.chat)
        return "; ".join(
            f"{'agent' if data.get('who') == 'agent' else 'you'}: "
            + " ".join(str(data.get("text") or "").split())[:40]
            for data in entries.values()
        )
    if kind in ("question", "process"):
        return None  # the answer's turn says it; a tool's process group is bookkeeping
    return f"{kind} ({len(entries)})"


def _int(value: Any, default: int) -> int:
    try:
        return max(int(str(value)), 1) if value is not None else default
    except ValueError:
        return default
