"""Orchestra's own agent loop (coding-agent-loop spec §2, digested in ``llm-sdks.md`` §3.2).

A session sends the conversation to the model, runs the tool calls it gets back (all of one
response at once, results kept in call order), sends every result back in one message, and
repeats until the model answers without tools or a limit is hit. Tool failures go back to the
model as error results; LLM errors that retrying cannot fix end the session (the LLM layer
has already retried the others). Each model call and each tool call is reported to
``on_turn`` as it completes, so the caller can record it durably; a session rebuilt from
recorded turns (``history=``) continues from there without running those tools again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Mapping, Sequence

import anyio
import attrs

from orchestra.agent.tools import ToolOutput, Toolset
from orchestra.llm.client import Client
from orchestra.llm.types import (
    Message,
    Request,
    Response,
    Role,
    ToolCall,
    ToolResult,
    Usage,
)

__all__ = ["AgentResult", "AgentSession", "ModelTurn", "ToolTurn", "detect_loop"]

#: what a model whose answer hit its output limit is asked next
CONTINUE = (
    "Your answer was cut off at the output token limit. Continue exactly where it stopped, "
    "without repeating anything."
)

LOOP_WARNING = (
    "Loop detected: the last {n} tool calls repeat the same pattern. Stop and try a "
    "different approach."
)


@attrs.frozen
class ModelTurn:
    """One model call and its answer."""

    index: int
    response: Response


@attrs.frozen
class ToolTurn:
    """One tool call and what it gave (``output.full_text`` is the untruncated output)."""

    index: int
    call: ToolCall
    output: ToolOutput


Turn = ModelTurn | ToolTurn
OnTurn = Callable[[Turn], Awaitable[None] | None]


@attrs.frozen
class AgentResult:
    text: str
    #: "completed" (answered without tools) or "turn_limit"
    stopped: str
    usage: Usage
    model_calls: int
    tool_calls: int
    files_written: tuple[str, ...]
    history: tuple[Message, ...]


def _signature(call: ToolCall) -> str:
    arguments = json.dumps(call.arguments, sort_keys=True, default=str)
    return f"{call.name}:{hashlib.blake2b(arguments.encode(), digest_size=8).hexdigest()}"


def detect_loop(signatures: Sequence[str], window: int = 10) -> bool:
    """True when the last ``window`` calls are one pattern of length 1, 2 or 3 repeated
    (``llm-sdks.md`` §3.3)."""
    if len(signatures) < window:
        return False
    recent = list(signatures[-window:])
    for length in (1, 2, 3):
        if window % length:
            continue
        pattern = recent[:length]
        if all(recent[i] == pattern[i % length] for i in range(window)):
            return True
    return False


@attrs.define
class AgentSession:
    """One agent's conversation in one workspace. ``max_model_calls`` bounds a session (an
    unattended pipeline must not loop forever); ``history`` continues a recorded one."""

    client: Client
    model: str
    system: str
    toolset: Toolset
    provider: str | None = None
    reasoning_effort: str | None = None
    max_tokens: int | None = None
    max_model_calls: int = 50
    #: an answer cut off at ``max_tokens``: "continue" (ask for the rest, at most
    #: ``max_continuations`` times) or "fail"; either way never taken as complete
    on_truncation: str = "continue"
    max_continuations: int = 3
    loop_window: int = 10
    on_turn: OnTurn | None = None
    history: list[Message] = attrs.field(factory=list, converter=list)
    _signatures: list[str] = attrs.Factory(list)
    _turns: int = 0

    async def run(
        self, user_text: str | None, *, known_results: Mapping[str, ToolOutput] | None = None
    ) -> AgentResult:
        """Send ``user_text`` (None: continue a recorded history as it stands) and work
        until the model answers without tools or the limit of model calls is reached.

        A recorded history may end in a round of tool calls cut short (a crash between the
        calls and their results): that round is finished first, running only the calls
        whose outputs are not in ``known_results`` (by call id)."""
        if user_text is not None:
            self.history.append(Message.user(user_text))
        usage = Usage()
        model_calls = tool_calls = 0
        written: list[str] = []
        last: Response | None = None
        final = self.history[-1] if self.history else None
        answered = final is not None and final.role is Role.ASSISTANT and not final.tool_calls
        if user_text is None and final is not None and answered:
            # answered before a crash: that answer stands, the model is not asked again
            return self._result(final.text, "completed", usage, 0, 0, written)
        pending = self.history[-1].tool_calls if self.history else []
        if user_text is None and pending and self.history[-1].role is Role.ASSISTANT:
            known = dict(known_results or {})
            missing = [call for call in pending if call.id not in known]
            for call, output in zip(missing, await self._run_tools(missing), strict=True):
                known[call.id] = output
                written.extend(output.files_written)
                tool_calls += 1
                await self._report(ToolTurn(self._next_index(), call, output))
            self.history.append(
                Message.tool_results(
                    [
                        ToolResult(call.id, known[call.id].text, known[call.id].is_error)
                        for call in pending
                    ]
                )
            )
        cut: list[str] = []  # the parts of an answer that hit the output limit
        while True:
            if model_calls >= self.max_model_calls:
                text = last.text if last is not None else ""
                return self._result(text, "turn_limit", usage, model_calls, tool_calls, written)
            response = await self.client.complete(self._request())
            model_calls += 1
            usage = usage + response.usage
            last = response
            self.history.append(response.message)
            await self._report(ModelTurn(self._next_index(), response))
            calls = response.tool_calls
            if not calls and response.finish_reason.reason == "length":
                cut.append(response.text)
                if self.on_truncation == "continue" and len(cut) <= self.max_continuations:
                    self.history.append(Message.user(CONTINUE))
                    continue
                text = "".join(cut)
                return self._result(text, "truncated", usage, model_calls, tool_calls, written)
            if not calls:
                text = "".join(cut) + response.text
                return self._result(text, "completed", usage, model_calls, tool_calls, written)
            cut.clear()
            outputs = await self._run_tools(calls)
            tool_calls += len(calls)
            for call, output in zip(calls, outputs, strict=True):
                written.extend(output.files_written)
                await self._report(ToolTurn(self._next_index(), call, output))
            self.history.append(
                Message.tool_results(
                    [
                        ToolResult(call.id, output.text, output.is_error)
                        for call, output in zip(calls, outputs, strict=True)
                    ]
                )
            )
            self._signatures.extend(_signature(call) for call in calls)
            if detect_loop(self._signatures, self.loop_window):
                self.history.append(Message.user(LOOP_WARNING.format(n=self.loop_window)))
                self._signatures.clear()

    def _request(self) -> Request:
        return Request(
            model=self.model,
            messages=(Message.system(self.system), *self.history),
            provider=self.provider,
            tools=self.toolset.definitions(),
            tool_choice="auto",
            max_tokens=self.max_tokens,
            reasoning_effort=self.reasoning_effort,
        )

    async def _run_tools(self, calls: Sequence[ToolCall]) -> list[ToolOutput]:
        """Every call of one response at once; results in call order."""
        outputs: list[ToolOutput | None] = [None] * len(calls)

        async def one(index: int, call: ToolCall) -> None:
            outputs[index] = await self.toolset.run(call)

        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(one, index, call)
        return [output for output in outputs if output is not None]

    def _next_index(self) -> int:
        self._turns += 1
        return self._turns

    async def _report(self, turn: Turn) -> None:
        if self.on_turn is not None:
            result = self.on_turn(turn)
            if result is not None:
                await result

    def _result(
        self,
        text: str,
        stopped: str,
        usage: Usage,
        model_calls: int,
        tool_calls: int,
        written: list[str],
    ) -> AgentResult:
        return AgentResult(
            text=text,
            stopped=stopped,
            usage=usage,
            model_calls=model_calls,
            tool_calls=tool_calls,
            files_written=tuple(dict.fromkeys(written)),
            history=tuple(self.history),
        )
