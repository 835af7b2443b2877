"""Anthropic's Messages API behind the unified types (``llm-sdks.md`` §2.3, §5.2).

:class:`AnthropicAdapter` translates a :class:`~orchestra.llm.types.Request` into one
``messages.create`` call of the ``anthropic`` SDK and the answer back into a
:class:`~orchestra.llm.types.Response`; :func:`translate_error` turns the SDK's exceptions
into :mod:`orchestra.llm.errors`. The SDK is imported on the first call, never when this
module is imported, so ``orchestra compile`` does not pay for it.

:meth:`AnthropicAdapter.stream` sends the same request through ``messages.stream``: the
SDK accumulates the message, so the FINISH event's response is built by the same code as
``complete``'s, from the same ``Message``.

The SDK client is built with ``max_retries=0``: :class:`~orchestra.llm.client.Client`
retries, once, with the ``retry-after`` the error carries.

What the translation settles:

- system and developer messages are joined into ``system=``; the conversation strictly
  alternates user and assistant (consecutive turns of one role are merged), tool results
  travel in a **user** turn, ahead of any text in it, as the API requires;
- thinking is echoed back verbatim with its signature, and only Anthropic's own (thinking
  from another provider, or without a signature, cannot be verified and is dropped);
- ``reasoning_effort`` becomes ``output_config={"effort": ...}`` with adaptive thinking;
  ``temperature`` is not a parameter of this SDK, so it is dropped with a warning;
- prompt caching is on by default through the top-level ``cache_control`` (the API marks
  the last cacheable block); ``provider_options["anthropic"]["auto_cache"] = False`` turns
  it off. ``beta_headers`` become one ``anthropic-beta`` header; every other key of
  ``provider_options["anthropic"]`` is passed to ``messages.create`` as is (e.g.
  ``thinking={"type": "enabled", "budget_tokens": 2048}``, which wins over the adaptive
  thinking that ``reasoning_effort`` asks for);
- usage reports Anthropic's own counts: ``input_tokens`` excludes the cached prompt
  (``cache_read_tokens``, ``cache_write_tokens``). Reasoning tokens are the API's
  ``thinking_tokens`` when it reports them, else estimated from the thinking text at about
  four characters per token (rounded up).
- a stream that breaks off (an ``error`` event, a dropped connection, an end before
  ``message_stop``) raises: an error event as the error its type stands for (an
  ``overloaded_error`` is a retryable ServerError), anything else a StreamError.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

from orchestra.llm.errors import (
    ConfigurationError,
    LLMError,
    NetworkError,
    ProviderError,
    QuotaExceededError,
    RequestTimeoutError,
    StreamError,
    error_for_status,
    retry_after_seconds,
)
from orchestra.llm.types import (
    ContentKind,
    ContentPart,
    FinishReason,
    Message,
    Request,
    Response,
    Role,
    StreamEvent,
    StreamEventKind,
    ThinkingData,
    ToolCall,
    ToolDefinition,
    Usage,
)

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicAdapter", "translate_error"]

PROVIDER = "anthropic"

#: ``max_tokens`` when the request leaves it unset (the API requires one)
DEFAULT_MAX_TOKENS = 4096

_FINISH_REASONS: Mapping[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "other",
}

#: the HTTP status each error type stands for, for an error that arrives in a stream
#: answered with 200 (``llm-sdks.md`` §0 #8)
_STATUS_OF_ERROR_TYPE: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "timeout_error": 504,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}

#: ``messages.create`` arguments the request itself decides
_RESERVED_OPTIONS = frozenset({"model", "messages", "max_tokens", "stream"})

#: shorter "keys" are test placeholders; redacting them would mangle ordinary words
_MIN_REDACTED_KEY = 8

_MAX_DETAIL = 500


class AnthropicAdapter:
    """``AnthropicAdapter(api_key)``: the Anthropic provider for
    :class:`~orchestra.llm.client.Client`. ``base_url`` is the API's host root (the SDK
    appends ``/v1/messages``); ``http_client`` is an ``httpx2.AsyncClient`` (tests pass one
    with a ``MockTransport``); ``timeout`` is the SDK's request timeout in seconds.
    :meth:`close` closes the HTTP client, one passed in included. Safe for concurrent
    requests."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        http_client: Any = None,
        timeout: float = 120.0,
    ) -> None:
        if not api_key:
            raise ConfigurationError("the Anthropic adapter needs an API key: ANTHROPIC_API_KEY")
        self._api_key = api_key
        self._base_url = base_url
        self._http_client = http_client
        self._timeout = timeout
        self._client: Any = None
        self._accepted_options: frozenset[str] = frozenset()

    @property
    def name(self) -> str:
        return PROVIDER

    async def complete(self, request: Request) -> Response:
        """One ``messages.create`` call; raises an :class:`~orchestra.llm.errors.LLMError`."""
        import anthropic

        client = self._sdk_client()
        params, warnings = _create_params(request, self._accepted_options)
        try:
            message = await client.messages.create(**params)
        except anthropic.AnthropicError as exc:
            # The SDK exception holds the request, Authorization header included: it does
            # not travel on; what it says is in the error's message and attributes.
            raise translate_error(exc, api_key=self._api_key) from None
        return _response(message, warnings)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """The events of one ``messages.stream`` call, ending with FINISH; raises an
        :class:`~orchestra.llm.errors.LLMError`."""
        import anthropic
        import httpx2

        client = self._sdk_client()
        params, warnings = _create_params(request, self._accepted_options)
        translation = _StreamTranslation(warnings)
        try:
            async with client.messages.stream(**params) as events:
                async for event in events:
                    for unified in translation.feed(event):
                        yield unified
        except anthropic.AnthropicError as exc:
            raise translate_error(exc, api_key=self._api_key) from None
        except httpx2.TransportError as exc:
            # The SDK lets a connection that fails mid-stream surface as httpx2's error.
            raise StreamError(
                _redact(f"the Anthropic stream broke off: {exc}", self._api_key),
                provider=PROVIDER,
            ) from None
        except ValueError as exc:
            # The SDK could not parse a tool's input as it accumulated the stream.
            raise StreamError(
                _redact(f"the Anthropic stream was malformed: {exc}", self._api_key),
                provider=PROVIDER,
            ) from None
        if not translation.finished:
            raise StreamError("the Anthropic stream ended before message_stop", provider=PROVIDER)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        elif self._http_client is not None:
            await self._http_client.aclose()

    def _sdk_client(self) -> Any:
        if self._client is None:
            from anthropic import AsyncAnthropic

            self._client = AsyncAnthropic(
                api_key=self._api_key,
                base_url=self._base_url,
                http_client=self._http_client,
                timeout=self._timeout,
                max_retries=0,
            )
            parameters = inspect.signature(self._client.messages.create).parameters
            self._accepted_options = frozenset(parameters) - _RESERVED_OPTIONS
        return self._client


def translate_error(exc: Exception, *, api_key: str = "") -> LLMError:
    """The :mod:`orchestra.llm.errors` error an ``anthropic`` SDK exception means, with
    the status, the provider's error type and message, and ``retry-after`` in seconds.
    ``api_key`` is blanked out of the message should the provider have echoed it."""
    import anthropic

    def redact(text: str) -> str:
        return _redact(text, api_key)

    # APITimeoutError is a subclass of APIConnectionError: it goes first.
    if isinstance(exc, anthropic.APITimeoutError):
        return RequestTimeoutError("the Anthropic API did not answer in time", provider=PROVIDER)
    if isinstance(exc, anthropic.APIConnectionError):
        cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
        return NetworkError(redact(f"could not reach the Anthropic API{cause}"), provider=PROVIDER)
    if not isinstance(exc, anthropic.APIStatusError):
        return ProviderError(redact(f"Anthropic SDK error: {exc}"), provider=PROVIDER)

    error_type = exc.type or ""
    error_code = exc.error_code or error_type
    status = exc.status_code
    if status == 200:
        # An error event mid-stream: the HTTP status was fine, the error type says what
        # went wrong (the error reports the status that type stands for).
        status = _STATUS_OF_ERROR_TYPE.get(error_type, 500)
    detail = exc.api_message or exc.message
    if len(detail) > _MAX_DETAIL:
        detail = detail[:_MAX_DETAIL] + "..."
    request_id = f", request {exc.request_id}" if exc.request_id else ""
    message = redact(
        f"Anthropic API error {status} ({error_type or 'unknown'}{request_id}): {detail}"
    )
    retry_after = retry_after_seconds(exc.response.headers)

    # Kinds error_for_status cannot tell from a status and a message.
    if status == 408:
        return RequestTimeoutError(
            message,
            provider=PROVIDER,
            status_code=status,
            error_code=error_code,
            retry_after=retry_after,
        )
    if status == 402 or error_type == "billing_error" or "spend_limit" in error_code:
        return QuotaExceededError(
            message,
            provider=PROVIDER,
            status_code=status,
            error_code=error_code,
            retry_after=retry_after,
        )
    return error_for_status(
        status, message, provider=PROVIDER, error_code=error_code, retry_after=retry_after
    )


def _redact(text: str, api_key: str) -> str:
    """``text`` with ``api_key`` blanked out."""
    if len(api_key) >= _MIN_REDACTED_KEY:
        text = text.replace(api_key, "[redacted]")
    return text


def _create_params(
    request: Request, accepted_options: frozenset[str]
) -> tuple[dict[str, Any], list[str]]:
    """The keyword arguments of ``messages.create`` for ``request``, and the warnings about
    what could not be sent."""
    options = dict(request.provider_options.get(PROVIDER, {}))
    beta_headers = options.pop("beta_headers", ())
    auto_cache = options.pop("auto_cache", True)
    unknown = sorted(set(options) - accepted_options)
    if unknown:
        names = ", ".join(f"provider_options.anthropic.{name}" for name in unknown)
        raise ConfigurationError(f"{names}: not an argument of Anthropic's messages.create")

    warnings: list[str] = []
    system, turns = _conversation(request.messages)
    params: dict[str, Any] = {
        "model": request.model,
        "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
        "messages": turns,
    }
    if system:
        params["system"] = system
    if request.tools:
        # Without tools there is nothing to choose, so tool_choice goes only with them.
        params["tools"] = [_tool(tool) for tool in request.tools]
        params["tool_choice"] = _tool_choice(request.tool_choice or "auto")
    if request.stop_sequences:
        params["stop_sequences"] = list(request.stop_sequences)
    if request.reasoning_effort is not None:
        params["output_config"] = {"effort": request.reasoning_effort}
        params["thinking"] = {"type": "adaptive"}
    if request.temperature is not None:
        warnings.append(
            f"temperature={request.temperature} was not sent: Anthropic's messages.create "
            "has no temperature parameter"
        )
    if auto_cache:
        params["cache_control"] = {"type": "ephemeral"}
    if beta_headers:
        betas = [beta_headers] if isinstance(beta_headers, str) else list(beta_headers)
        headers = dict(options.pop("extra_headers", None) or {})
        headers["anthropic-beta"] = ",".join(betas)
        params["extra_headers"] = headers
    params.update(options)
    return params, warnings


def _conversation(messages: Iterable[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The system text and the alternating user/assistant turns of ``messages``."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.role in (Role.SYSTEM, Role.DEVELOPER):
            if message.text:
                system.append(message.text)
            continue
        role = "assistant" if message.role is Role.ASSISTANT else "user"
        blocks = [block for part in message.content if (block := _block(part)) is not None]
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        if turn["role"] == "user":
            # The API wants a turn's tool results before any text in it (a stable sort).
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return "\n\n".join(system), turns


def _block(part: ContentPart) -> dict[str, Any] | None:
    """The content block for ``part``, or None when it is not sent."""
    if part.kind is ContentKind.TEXT:
        # The API rejects empty text blocks.
        return {"type": "text", "text": part.text} if part.text else None
    if part.tool_call is not None:
        call = part.tool_call
        return {
            "type": "tool_use",
            "id": call.id,
            "name": call.name,
            "input": _tool_input(call.arguments),
        }
    if part.tool_result is not None:
        result = part.tool_result
        return {
            "type": "tool_result",
            "tool_use_id": result.tool_call_id,
            "content": result.content,
            "is_error": result.is_error,
        }
    thinking = part.thinking
    if thinking is None or thinking.provider != PROVIDER or thinking.signature is None:
        return None
    if thinking.redacted or part.kind is ContentKind.REDACTED_THINKING:
        return {"type": "redacted_thinking", "data": thinking.signature}
    return {"type": "thinking", "thinking": thinking.text, "signature": thinking.signature}


def _tool_input(arguments: Mapping[str, Any] | str) -> dict[str, Any]:
    if not isinstance(arguments, str):
        return dict(arguments)
    # Text that is not a JSON object was already reported to the model as an error result;
    # the call itself can only be echoed with an object.
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "name": tool.name,
        "description": tool.description,
        "input_schema": dict(tool.parameters),
    }


def _tool_choice(choice: str) -> dict[str, str]:
    if choice in ("auto", "none"):
        return {"type": choice}
    if choice == "required":
        return {"type": "any"}
    return {"type": "tool", "name": choice}


def _response(message: Any, warnings: Sequence[str]) -> Response:
    """The unified response for an SDK ``Message``."""
    notes = list(warnings)
    parts: list[ContentPart] = []
    for block in message.content:
        if block.type == "text":
            parts.append(ContentPart.of_text(block.text))
        elif block.type == "tool_use":
            parts.append(ContentPart(ContentKind.TOOL_CALL, tool_call=_tool_call(block)))
        elif block.type == "thinking":
            thinking = ThinkingData(block.thinking, signature=block.signature, provider=PROVIDER)
            parts.append(ContentPart(ContentKind.THINKING, thinking=thinking))
        elif block.type == "redacted_thinking":
            thinking = ThinkingData("", signature=block.data, redacted=True, provider=PROVIDER)
            parts.append(ContentPart(ContentKind.REDACTED_THINKING, thinking=thinking))
        else:
            notes.append(f"a {block.type} content block was left out: it has no unified form")
    stop_reason = message.stop_reason or ""
    return Response(
        id=message.id,
        model=message.model,
        provider=PROVIDER,
        message=Message(Role.ASSISTANT, tuple(parts)),
        finish_reason=FinishReason(_FINISH_REASONS.get(stop_reason, "other"), raw=stop_reason),
        usage=_usage(message.usage, parts),
        warnings=tuple(notes),
    )


def _tool_call(block: Any) -> ToolCall:
    """The call a ``tool_use`` block asks for."""
    return ToolCall(id=block.id, name=block.name, arguments=dict(block.input))


class _StreamTranslation:
    """Turns the events of an SDK ``MessageStream`` into unified stream events. The SDK
    accumulates the message; this keeps only what the unified events need on the way."""

    def __init__(self, warnings: Sequence[str]) -> None:
        self.warnings = warnings
        self.finished = False
        #: by block index: the id and name of each tool_use block, and its input text so far
        self.calls: dict[int, tuple[str, str, str]] = {}

    def feed(self, event: Any) -> list[StreamEvent]:
        if event.type == "message_start":
            return [StreamEvent(StreamEventKind.STREAM_START)]
        if event.type == "content_block_start":
            block = event.content_block
            if block.type != "tool_use":
                return []
            self.calls[event.index] = (block.id, block.name, "")
            call = ToolCall(block.id, block.name, "")
            return [StreamEvent(StreamEventKind.TOOL_CALL_START, tool_call=call)]
        if event.type == "content_block_delta":
            return self._delta(event.index, event.delta)
        if event.type == "content_block_stop" and event.index in self.calls:
            call = _tool_call(event.content_block)
            return [StreamEvent(StreamEventKind.TOOL_CALL_END, tool_call=call)]
        if event.type == "message_stop":
            self.finished = True
            response = _response(event.message, self.warnings)
            return [StreamEvent(StreamEventKind.FINISH, response=response)]
        return []

    def _delta(self, index: int, delta: Any) -> list[StreamEvent]:
        if delta.type == "text_delta":
            return [StreamEvent(StreamEventKind.TEXT_DELTA, delta=delta.text)]
        if delta.type == "thinking_delta":
            return [StreamEvent(StreamEventKind.REASONING_DELTA, delta=delta.thinking)]
        if delta.type == "input_json_delta" and index in self.calls:
            call_id, name, so_far = self.calls[index]
            so_far += delta.partial_json
            self.calls[index] = (call_id, name, so_far)
            call = ToolCall(call_id, name, so_far)
            return [
                StreamEvent(
                    StreamEventKind.TOOL_CALL_DELTA, delta=delta.partial_json, tool_call=call
                )
            ]
        return []


def _usage(usage: Any, parts: Sequence[ContentPart]) -> Usage:
    details = usage.output_tokens_details
    if details is not None:
        reasoning: int | None = details.thinking_tokens
    else:
        characters = sum(
            len(part.thinking.text)
            for part in parts
            if part.thinking is not None and not part.thinking.redacted
        )
        reasoning = math.ceil(characters / 4) if characters else None
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=reasoning,
        cache_read_tokens=usage.cache_read_input_tokens,
        cache_write_tokens=usage.cache_creation_input_tokens,
    )
