"""The unified LLM data model (unified-llm-spec §3, digested in ``llm-sdks.md`` §2.2).

Provider-neutral messages, requests and responses. Adapters translate them to and from each
provider's native API; the agent loop and the backends only ever see these.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

__all__ = [
    "ContentKind",
    "ContentPart",
    "FinishReason",
    "Message",
    "Request",
    "Response",
    "Role",
    "StreamEvent",
    "StreamEventKind",
    "ThinkingData",
    "ToolCall",
    "ToolDefinition",
    "ToolResult",
    "Usage",
]

#: the spec's letters, digits and '_', plus '-', which Anthropic, OpenAI and Gemini all
#: accept and repository tools (``app__run-tests``) use
_TOOL_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9_-]*$")


class Role(enum.Enum):
    SYSTEM = "system"
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"
    DEVELOPER = "developer"


class ContentKind(enum.Enum):
    TEXT = "text"
    TOOL_CALL = "tool_call"
    TOOL_RESULT = "tool_result"
    THINKING = "thinking"
    REDACTED_THINKING = "redacted_thinking"


@attrs.frozen
class ToolCall:
    """A call the model asked for. ``arguments`` is the parsed JSON object, or the raw text
    when it did not parse (the agent loop reports that back as an error result)."""

    id: str
    name: str
    arguments: Mapping[str, Any] | str


@attrs.frozen
class ToolResult:
    tool_call_id: str
    content: str
    is_error: bool = False


@attrs.frozen
class ThinkingData:
    """Reasoning the model showed. Sent back verbatim to the same provider and model on the
    next request (Anthropic rejects a modified block); ``signature`` and ``redacted`` data are
    opaque. ``provider`` says whose it is: thinking is dropped when the provider changes."""

    text: str
    signature: str | None = None
    redacted: bool = False
    provider: str = ""


@attrs.frozen
class ContentPart:
    """One part of a message: exactly one payload, named by ``kind``."""

    kind: ContentKind
    text: str | None = None
    tool_call: ToolCall | None = None
    tool_result: ToolResult | None = None
    thinking: ThinkingData | None = None

    @classmethod
    def of_text(cls, text: str) -> ContentPart:
        return cls(ContentKind.TEXT, text=text)


@attrs.frozen
class Message:
    role: Role
    content: tuple[ContentPart, ...] = ()
    #: provider items that must be echoed back unchanged (OpenAI reasoning items), by provider
    provider_items: Mapping[str, Sequence[Mapping[str, Any]]] = attrs.field(factory=dict)

    @classmethod
    def system(cls, text: str) -> Message:
        return cls(Role.SYSTEM, (ContentPart.of_text(text),))

    @classmethod
    def user(cls, text: str) -> Message:
        return cls(Role.USER, (ContentPart.of_text(text),))

    @classmethod
    def assistant(cls, text: str) -> Message:
        return cls(Role.ASSISTANT, (ContentPart.of_text(text),))

    @classmethod
    def tool_results(cls, results: Sequence[ToolResult]) -> Message:
        return cls(
            Role.TOOL,
            tuple(ContentPart(ContentKind.TOOL_RESULT, tool_result=r) for r in results),
        )

    @property
    def text(self) -> str:
        return "".join(p.text or "" for p in self.content if p.kind is ContentKind.TEXT)

    @property
    def tool_calls(self) -> list[ToolCall]:
        return [p.tool_call for p in self.content if p.tool_call is not None]

    @property
    def reasoning(self) -> str:
        return "".join(
            p.thinking.text for p in self.content if p.thinking is not None and p.thinking.text
        )


def _check_tool_name(instance: ToolDefinition, attribute: Any, value: str) -> None:
    if not _TOOL_NAME.match(value) or len(value) > 64:
        raise ValueError(
            f"tool name {value!r}: expected a letter, then letters, digits, '_' or '-' (64 at most)"
        )


def _check_schema(instance: ToolDefinition, attribute: Any, value: Mapping[str, Any]) -> None:
    if value.get("type") != "object":
        raise ValueError(f"tool {instance.name!r}: parameters must be a JSON schema of an object")


@attrs.frozen
class ToolDefinition:
    name: str = attrs.field(validator=_check_tool_name)
    description: str
    parameters: Mapping[str, Any] = attrs.field(
        factory=lambda: {"type": "object", "properties": {}}, validator=_check_schema
    )


@attrs.frozen
class Request:
    """One model call. ``provider_options`` maps a provider name to options only that
    provider's adapter reads (e.g. ``{"anthropic": {"thinking": {...}}}``)."""

    model: str
    messages: tuple[Message, ...]
    provider: str | None = None
    tools: tuple[ToolDefinition, ...] = ()
    #: "auto" (the default with tools), "none", "required", or a tool's name
    tool_choice: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    stop_sequences: tuple[str, ...] = ()
    #: "low" | "medium" | "high" (and provider extras such as "xhigh"); None: not sent
    reasoning_effort: str | None = None
    provider_options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)


@attrs.frozen
class FinishReason:
    #: stop | length | tool_calls | content_filter | error | other
    reason: str
    raw: str = ""


@attrs.frozen
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        def optional(a: int | None, b: int | None) -> int | None:
            return None if a is None and b is None else (a or 0) + (b or 0)

        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            optional(self.reasoning_tokens, other.reasoning_tokens),
            optional(self.cache_read_tokens, other.cache_read_tokens),
            optional(self.cache_write_tokens, other.cache_write_tokens),
        )


@attrs.frozen
class Response:
    id: str
    model: str
    provider: str
    message: Message
    finish_reason: FinishReason
    usage: Usage = Usage()
    warnings: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        return self.message.text

    @property
    def tool_calls(self) -> list[ToolCall]:
        return self.message.tool_calls

    @property
    def reasoning(self) -> str:
        return self.message.reasoning


class StreamEventKind(enum.Enum):
    """What a :class:`StreamEvent` reports (unified-llm-spec §3.14, without the start/end
    events of text and reasoning segments, which no caller needs)."""

    #: the provider accepted the request and began answering
    STREAM_START = "stream_start"
    #: more answer text, in ``delta``
    TEXT_DELTA = "text_delta"
    #: more reasoning text (Anthropic thinking, an OpenAI reasoning summary), in ``delta``
    REASONING_DELTA = "reasoning_delta"
    #: the model began a tool call: ``tool_call`` has its id and name, no arguments yet
    TOOL_CALL_START = "tool_call_start"
    #: more of a call's arguments (JSON text) in ``delta``; ``tool_call.arguments`` holds
    #: the text so far
    TOOL_CALL_DELTA = "tool_call_delta"
    #: the call is whole: ``tool_call`` is the one the final response holds
    TOOL_CALL_END = "tool_call_end"
    #: the answer is complete: ``response`` is what ``complete()`` would have returned
    FINISH = "finish"


@attrs.frozen
class StreamEvent:
    """One event of a streamed model call (unified-llm-spec §3.13). Joining the ``delta`` of
    the TEXT_DELTA events gives ``response.text`` of the FINISH event, which carries the
    whole :class:`Response`, thinking signatures and provider items included, so that its
    message can go back verbatim in the next request."""

    kind: StreamEventKind
    delta: str = ""
    tool_call: ToolCall | None = None
    response: Response | None = None

    @property
    def usage(self) -> Usage | None:
        """The call's usage, on the FINISH event."""
        return self.response.usage if self.response is not None else None

    @property
    def finish_reason(self) -> FinishReason | None:
        """Why the model stopped, on the FINISH event."""
        return self.response.finish_reason if self.response is not None else None
