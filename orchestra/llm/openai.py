"""The OpenAI adapter: the unified types over the Responses API (``/v1/responses``).

Requests are stateless (``store=False``): each one carries the whole conversation. Reasoning
crosses turns the way OpenAI requires without stored state: the raw output items of every
response (``reasoning`` items with their ``encrypted_content``, messages, function calls) are
kept on the returned assistant message as ``Message.provider_items["openai"]`` and sent back
verbatim when that message is part of a later request (``llm-sdks.md`` §2.3).

``stream`` sends the same request with ``stream=True``. Its FINISH event is built from the
response that ``response.completed`` (or ``response.incomplete``) carries, by the same code
as ``complete``'s answer. OpenAI reports a failure mid-stream as an ``error`` or a
``response.failed`` event, not as an exception: the adapter raises the error its code
stands for (``server_error`` a ServerError, ``rate_limit_exceeded`` a RateLimitError, an
unknown code a StreamError), as it does for a stream that breaks off or ends early.

Errors are mapped onto ``orchestra.llm.errors``; the SDK client is built with
``max_retries=0`` because retries belong to ``orchestra.llm.client.Client``. The ``openai``
SDK is imported on first use, not when this module is imported.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from orchestra.llm.errors import (
    ConfigurationError,
    ContentFilterError,
    ContextLengthError,
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

if TYPE_CHECKING:
    import openai
    from openai.types.responses import Response as OpenAIResponse
    from openai.types.responses import ResponseStreamEvent, ResponseUsage

__all__ = ["OpenAIAdapter"]

PROVIDER = "openai"

#: OpenAI error codes that say more than the status and the message do
_BY_CODE: dict[str, type[ProviderError]] = {
    "context_length_exceeded": ContextLengthError,
    "insufficient_quota": QuotaExceededError,
}

_INCOMPLETE: dict[str, str] = {"max_output_tokens": "length", "content_filter": "content_filter"}

#: the HTTP status an error code stands for, for an error that arrives in a stream answered
#: with 200; other codes are StreamErrors
_STATUS_OF_STREAM_CODE: dict[str, int] = {
    "server_error": 500,
    "vector_store_timeout": 504,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "context_length_exceeded": 400,
    "invalid_prompt": 400,
}

#: stream error codes that say a safety policy refused the request
_POLICY_CODES = frozenset(
    {"bio_policy", "misalignment_policy_violation", "image_content_policy_violation"}
)


class OpenAIAdapter:
    """``OpenAIAdapter(api_key)``: the ``openai`` provider of ``orchestra.llm.client.Client``.

    ``base_url`` must include ``/v1``. ``http_client`` is an ``httpx2.AsyncClient`` (tests
    pass one over ``httpx2.MockTransport``); the adapter closes it in ``close``. ``timeout``
    bounds each request, in seconds.
    """

    name = PROVIDER

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        http_client: Any = None,
        timeout: float = 120.0,
    ) -> None:
        if not api_key:
            raise ConfigurationError("the OpenAI adapter needs an API key (OPENAI_API_KEY)")
        self._api_key = api_key
        self._base_url = base_url
        self._organization = organization
        self._project = project
        self._http_client = http_client
        self._timeout = timeout
        self._sdk: openai.AsyncOpenAI | None = None

    def _client(self) -> openai.AsyncOpenAI:
        # Built on first use, so that configuring providers does not import the SDK.
        if self._sdk is None:
            from openai import AsyncOpenAI

            self._sdk = AsyncOpenAI(
                api_key=self._api_key,
                base_url=self._base_url,
                organization=self._organization,
                project=self._project,
                timeout=self._timeout,
                max_retries=0,
                http_client=self._http_client,
            )
        return self._sdk

    async def complete(self, request: Request) -> Response:
        """One call of ``responses.create``; raises an ``orchestra.llm.errors`` error."""
        import openai

        params, warnings = _request_params(request)
        try:
            raw: OpenAIResponse = await self._client().responses.create(**params)
        except openai.OpenAIError as exc:
            # A server or transport message may echo the key: then the SDK's exception chain
            # stays out of the traceback too.
            raise self._error(exc) from (None if self._leaks(exc) else exc)
        return _unified_response(raw, warnings)

    async def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """The events of one ``responses.create(stream=True)`` call, ending with FINISH;
        raises an ``orchestra.llm.errors`` error."""
        import openai

        params, warnings = _request_params(request)
        try:
            events = await self._client().responses.create(**params, stream=True)
        except openai.OpenAIError as exc:
            raise self._error(exc) from (None if self._leaks(exc) else exc)
        translation = _StreamTranslation(warnings, redact=self._redact)
        try:
            async with events:
                async for event in events:
                    for unified in translation.feed(event):
                        yield unified
        except openai.APIConnectionError as exc:
            # The response had begun: a timeout or a dropped connection breaks the stream.
            cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
            raise StreamError(
                self._redact(f"the OpenAI stream broke off{cause}"), provider=PROVIDER
            ) from None
        except openai.OpenAIError as exc:
            raise self._error(exc) from (None if self._leaks(exc) else exc)
        if not translation.finished:
            raise StreamError(
                "the OpenAI stream ended before response.completed", provider=PROVIDER
            )

    async def close(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()
        elif self._http_client is not None:
            await self._http_client.aclose()

    def _leaks(self, exc: BaseException) -> bool:
        """Whether the key is in the message of ``exc`` or of an exception it chains."""
        seen: BaseException | None = exc
        while seen is not None:
            if self._api_key in str(seen):
                return True
            seen = seen.__cause__ or seen.__context__
        return False

    def _redact(self, text: str) -> str:
        return text.replace(self._api_key, "[redacted]")

    def _error(self, exc: openai.OpenAIError) -> LLMError:
        """The ``orchestra.llm.errors`` error an SDK exception means, without the API key."""
        import openai

        redact = self._redact
        if isinstance(exc, openai.APITimeoutError):  # a subclass of APIConnectionError
            return RequestTimeoutError(
                f"OpenAI did not answer within {self._timeout:g}s", provider=PROVIDER
            )
        if isinstance(exc, openai.APIConnectionError):
            cause = f": {exc.__cause__}" if exc.__cause__ is not None else ""
            return NetworkError(redact(f"cannot reach OpenAI{cause}"), provider=PROVIDER)
        if isinstance(exc, openai.APIStatusError):
            return _status_error(exc, redact)
        if type(exc) is openai.APIError:
            # The SDK raises it for an error object in a stream's data.
            return _stream_error(exc.code or "", exc.message, redact)
        return ProviderError(redact(f"OpenAI SDK error: {exc}"), provider=PROVIDER)


def _status_error(exc: openai.APIStatusError, redact: Callable[[str], str]) -> LLMError:
    status = exc.status_code
    code = exc.code or exc.type or ""
    body = exc.body if isinstance(exc.body, Mapping) else {}
    detail = body.get("message") or exc.message
    context = ", ".join(
        [f"status {status}"]
        + ([code] if code else [])
        + ([f"request {exc.request_id}"] if exc.request_id else [])
    )
    message = redact(f"OpenAI: {detail} ({context})")
    retry_after = retry_after_seconds(exc.response.headers)
    if status == 408:
        return RequestTimeoutError(message, provider=PROVIDER, status_code=status, error_code=code)
    error = error_for_status(
        status, message, provider=PROVIDER, error_code=code, retry_after=retry_after
    )
    refined = _BY_CODE.get(code)
    if refined is not None and not isinstance(error, refined):
        return refined(
            message,
            provider=PROVIDER,
            status_code=status,
            error_code=code,
            retry_after=retry_after,
        )
    return error


def _stream_error(code: str, message: str, redact: Callable[[str], str]) -> LLMError:
    """The error an ``error`` or ``response.failed`` event of a stream means."""
    text = redact(f"OpenAI stream failed: {message} ({code or 'no code'})")
    if code in _POLICY_CODES:
        return ContentFilterError(text, provider=PROVIDER, error_code=code)
    status = _STATUS_OF_STREAM_CODE.get(code)
    if status is None:
        return StreamError(text, provider=PROVIDER, error_code=code)
    error = error_for_status(status, text, provider=PROVIDER, error_code=code)
    refined = _BY_CODE.get(code)
    if refined is not None and not isinstance(error, refined):
        return refined(text, provider=PROVIDER, status_code=status, error_code=code)
    return error


class _StreamTranslation:
    """Turns Responses API stream events into unified stream events."""

    def __init__(self, warnings: tuple[str, ...], *, redact: Callable[[str], str]) -> None:
        self.warnings = warnings
        self.redact = redact
        self.finished = False
        #: by output index: the call id and name of each function call, and its arguments so far
        self.calls: dict[int, tuple[str, str, str]] = {}

    def feed(self, event: ResponseStreamEvent) -> list[StreamEvent]:
        """The unified events ``event`` stands for; raises on an ``error`` or
        ``response.failed`` event."""
        if event.type == "response.created":
            return [StreamEvent(StreamEventKind.STREAM_START)]
        if event.type in ("response.output_text.delta", "response.refusal.delta"):
            # complete() reads a refusal as the answer's text, so the stream does too.
            return [StreamEvent(StreamEventKind.TEXT_DELTA, delta=event.delta)]
        if event.type == "response.reasoning_summary_part.added" and event.summary_index > 0:
            # complete() joins a reasoning item's summary parts with a blank line.
            return [StreamEvent(StreamEventKind.REASONING_DELTA, delta="\n\n")]
        if event.type == "response.reasoning_summary_text.delta":
            return [StreamEvent(StreamEventKind.REASONING_DELTA, delta=event.delta)]
        if event.type == "response.output_item.added" and event.item.type == "function_call":
            self.calls[event.output_index] = (event.item.call_id, event.item.name, "")
            call = ToolCall(event.item.call_id, event.item.name, "")
            return [StreamEvent(StreamEventKind.TOOL_CALL_START, tool_call=call)]
        if (
            event.type == "response.function_call_arguments.delta"
            and event.output_index in self.calls
        ):
            call_id, name, so_far = self.calls[event.output_index]
            so_far += event.delta
            self.calls[event.output_index] = (call_id, name, so_far)
            call = ToolCall(call_id, name, so_far)
            return [StreamEvent(StreamEventKind.TOOL_CALL_DELTA, delta=event.delta, tool_call=call)]
        if event.type == "response.output_item.done" and event.item.type == "function_call":
            item = event.item
            call = ToolCall(item.call_id, item.name, _parse_arguments(item.arguments))
            return [StreamEvent(StreamEventKind.TOOL_CALL_END, tool_call=call)]
        if event.type in ("response.completed", "response.incomplete"):
            self.finished = True
            response = _unified_response(event.response, self.warnings)
            return [StreamEvent(StreamEventKind.FINISH, response=response)]
        if event.type == "response.failed":
            error = event.response.error
            if error is None:
                raise StreamError(
                    "the OpenAI response failed without saying why", provider=PROVIDER
                )
            raise _stream_error(error.code, error.message, self.redact)
        if event.type == "error":
            raise _stream_error(event.code or "", event.message, self.redact)
        return []


#: model families that do not reason, to which ``include`` must not ask for reasoning
_NON_REASONING_MODELS = ("gpt-4", "gpt-3.5", "chatgpt-")


def _request_params(request: Request) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The keyword arguments of ``responses.create`` for ``request``, and warnings about
    what the Responses API cannot express."""
    instructions = "\n\n".join(
        m.text for m in request.messages if m.role in (Role.SYSTEM, Role.DEVELOPER) and m.text
    )
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role not in (Role.SYSTEM, Role.DEVELOPER):
            items.extend(_input_items(message))
    params: dict[str, Any] = {"model": request.model, "input": items, "store": False}
    if not request.model.startswith(_NON_REASONING_MODELS):
        # Reasoning carried across turns without server-side state; a model that does not
        # reason refuses the request with it ("Encrypted content is not supported").
        params["include"] = ["reasoning.encrypted_content"]
    if instructions:
        params["instructions"] = instructions
    if request.tools:
        params["tools"] = [_tool(tool) for tool in request.tools]
        params["tool_choice"] = _tool_choice(request.tool_choice or "auto")
    elif request.tool_choice is not None:
        params["tool_choice"] = _tool_choice(request.tool_choice)
    if request.max_tokens is not None:
        params["max_output_tokens"] = request.max_tokens
    if request.reasoning_effort is not None:
        params["reasoning"] = {"effort": request.reasoning_effort}
    if request.temperature is not None:
        params["temperature"] = request.temperature
    options = request.provider_options.get(PROVIDER)
    if options:
        # Merged into the body last, so they win, and reach the API even when this SDK
        # version has no parameter of that name.
        params["extra_body"] = dict(options)
    warnings: tuple[str, ...] = ()
    if request.stop_sequences:
        warnings = ("stop_sequences are not supported by the OpenAI Responses API: ignored",)
    return params, warnings


def _input_items(message: Message) -> list[dict[str, Any]]:
    """The Responses input items of one user, assistant or tool message, in part order.

    An assistant message that came from this adapter is sent as the raw output items it was
    made from: OpenAI reasoning can only be carried over that way.
    """
    echoed = message.provider_items.get(PROVIDER)
    if message.role is Role.ASSISTANT and echoed:
        return [dict(item) for item in echoed]
    items: list[dict[str, Any]] = []
    texts: list[str] = []

    def flush_text() -> None:
        if texts:
            items.append(_message_item(message.role, texts))
            texts.clear()

    for part in message.content:
        if part.kind is ContentKind.TEXT and part.text:
            texts.append(part.text)
        elif part.tool_call is not None:
            flush_text()
            items.append(_function_call(part.tool_call))
        elif part.tool_result is not None:
            flush_text()
            items.append(
                {
                    "type": "function_call_output",
                    "call_id": part.tool_result.tool_call_id,
                    "output": part.tool_result.content,
                }
            )
        # Thinking without the raw reasoning item cannot be sent back to OpenAI: dropped.
    flush_text()
    return items


def _message_item(role: Role, texts: Sequence[str]) -> dict[str, Any]:
    if role is Role.ASSISTANT:
        return {"type": "message", "role": "assistant", "content": "".join(texts)}
    return {
        "type": "message",
        "role": "user",
        "content": [{"type": "input_text", "text": text} for text in texts],
    }


def _function_call(call: ToolCall) -> dict[str, Any]:
    arguments = (
        call.arguments if isinstance(call.arguments, str) else json.dumps(dict(call.arguments))
    )
    return {"type": "function_call", "call_id": call.id, "name": call.name, "arguments": arguments}


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "name": tool.name,
        "description": tool.description,
        "parameters": dict(tool.parameters),
        "strict": False,
    }


def _tool_choice(choice: str) -> str | dict[str, str]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "name": choice}


def _unified_response(raw: OpenAIResponse, warnings: tuple[str, ...] = ()) -> Response:
    """The unified Response of a Responses API result; its message keeps the raw output
    items in ``provider_items["openai"]``."""
    from openai.types.responses import (
        ResponseFunctionToolCall,
        ResponseOutputMessage,
        ResponseReasoningItem,
    )

    parts: list[ContentPart] = []
    for item in raw.output:
        if isinstance(item, ResponseReasoningItem):
            summary = "\n\n".join(s.text for s in item.summary)
            thinking = ThinkingData(summary, provider=PROVIDER)
            parts.append(ContentPart(ContentKind.THINKING, thinking=thinking))
        elif isinstance(item, ResponseOutputMessage):
            for content in item.content:
                text = content.text if content.type == "output_text" else content.refusal
                parts.append(ContentPart.of_text(text))
        elif isinstance(item, ResponseFunctionToolCall):
            call = ToolCall(item.call_id, item.name, _parse_arguments(item.arguments))
            parts.append(ContentPart(ContentKind.TOOL_CALL, tool_call=call))
    items = tuple(item.to_dict(mode="json", exclude_none=True) for item in raw.output)
    message = Message(Role.ASSISTANT, tuple(parts), provider_items={PROVIDER: items})
    if raw.status == "failed" and raw.error is not None:
        warnings = (*warnings, f"response failed: {raw.error.code}: {raw.error.message}")
    return Response(
        id=raw.id,
        model=str(raw.model),
        provider=PROVIDER,
        message=message,
        finish_reason=_finish_reason(raw),
        usage=_unified_usage(raw.usage),
        warnings=warnings,
    )


def _parse_arguments(arguments: str) -> Mapping[str, Any] | str:
    """A function call's arguments as a JSON object, or the raw text when they are not one."""
    try:
        parsed = json.loads(arguments)
    except ValueError:
        return arguments
    return parsed if isinstance(parsed, dict) else arguments


def _finish_reason(raw: OpenAIResponse) -> FinishReason:
    """Derived from the status: the Responses API has no finish reason (``llm-sdks.md``
    §2.3)."""
    status = raw.status or ""
    if status == "completed":
        called = any(item.type == "function_call" for item in raw.output)
        return FinishReason("tool_calls" if called else "stop", status)
    if status == "incomplete":
        reason = raw.incomplete_details.reason if raw.incomplete_details else None
        return FinishReason(_INCOMPLETE.get(reason or "", "other"), reason or status)
    if status == "failed":
        return FinishReason("error", status)
    return FinishReason("other", status)


def _unified_usage(usage: ResponseUsage | None) -> Usage:
    if usage is None:
        return Usage()
    return Usage(
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        reasoning_tokens=usage.output_tokens_details.reasoning_tokens,
        cache_read_tokens=usage.input_tokens_details.cached_tokens,
        # Newer than the other counts: older answers do not carry it.
        cache_write_tokens=getattr(usage.input_tokens_details, "cache_write_tokens", None),
    )
