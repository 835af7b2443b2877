"""Streaming through the unified client: each adapter's events over an SSE body served by
``httpx2.MockTransport`` (no network), the FINISH response against ``complete()``'s, errors
that arrive mid-stream, and ``Client.stream``'s retries, which stop once an event reached
the caller."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import aclosing
from typing import Any

import httpx2
import pytest
import test_llm_anthropic as fake_anthropic
import test_llm_openai as fake_openai

from orchestra.llm.anthropic import AnthropicAdapter
from orchestra.llm.client import Client, RetryPolicy, StreamingAdapter
from orchestra.llm.errors import (
    AuthenticationError,
    ConfigurationError,
    ContentFilterError,
    LLMError,
    RateLimitError,
    ServerError,
    StreamError,
)
from orchestra.llm.openai import OpenAIAdapter
from orchestra.llm.types import (
    Message,
    Request,
    Response,
    StreamEvent,
    StreamEventKind,
    ThinkingData,
    ToolCall,
    ToolResult,
)
from orchestra.testing import RecordingSleep, ScriptedModel, model_says

Kind = StreamEventKind
Event = dict[str, Any]

WEATHER = fake_anthropic.WEATHER


def halves(text: str) -> list[str]:
    """``text`` in two pieces, as a provider streams it."""
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


def sse(events: Iterable[Event]) -> bytes:
    return "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events).encode()


class ServedStream(httpx2.AsyncByteStream):
    """An SSE body that may break off with ``failure`` after its events, and records
    whether the client closed it."""

    def __init__(self, events: Sequence[Event], failure: Exception | None = None) -> None:
        self.events = events
        self.failure = failure
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for event in self.events:
            yield sse([event])
        if self.failure is not None:
            raise self.failure

    async def aclose(self) -> None:
        self.closed = True


def sse_reply(events: Sequence[Event], failure: Exception | None = None) -> httpx2.Response:
    return httpx2.Response(
        200,
        stream=ServedStream(events, failure),
        headers={"content-type": "text/event-stream"},
    )


async def collect(events: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in events]


def joined(events: Iterable[StreamEvent], kind: StreamEventKind) -> str:
    return "".join(event.delta for event in events if event.kind is kind)


def finish(events: Sequence[StreamEvent]) -> Response:
    assert events[-1].kind is Kind.FINISH
    assert events[-1].response is not None
    return events[-1].response


async def events_then_error(events: AsyncIterator[StreamEvent]) -> tuple[list[Kind], LLMError]:
    """The kinds of the events delivered before the stream raised, and the error."""
    seen: list[Kind] = []
    try:
        async for event in events:
            seen.append(event.kind)
    except LLMError as error:
        return seen, error
    raise AssertionError(f"the stream ended without an error, after {seen}")


# --- Anthropic -----------------------------------------------------------------------------


def anthropic_events(message: dict[str, Any], *, stop: bool = True) -> list[Event]:
    """The Messages API stream that delivers ``message`` (a response body) piece by piece:
    input usage first, each block started empty and filled by two deltas, output usage last."""
    usage = dict(message["usage"])
    output_usage = {"output_tokens": usage.pop("output_tokens")}
    if "output_tokens_details" in usage:
        output_usage["output_tokens_details"] = usage.pop("output_tokens_details")
    start = message | {"content": [], "stop_reason": None, "usage": usage | {"output_tokens": 1}}
    events: list[Event] = [{"type": "message_start", "message": start}]
    for index, block in enumerate(message["content"]):
        deltas: list[dict[str, Any]] = []
        if block["type"] == "text":
            empty = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": piece} for piece in halves(block["text"])]
        elif block["type"] == "thinking":
            empty = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": piece} for piece in halves(block["thinking"])
            ]
            deltas.append({"type": "signature_delta", "signature": block["signature"]})
        elif block["type"] in ("tool_use", "server_tool_use"):
            empty = block | {"input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": piece}
                for piece in halves(json.dumps(block["input"]))
            ]
        else:
            empty = block
        events.append({"type": "content_block_start", "index": index, "content_block": empty})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
            "usage": output_usage,
        }
    )
    if stop:
        events.append({"type": "message_stop"})
    return events


def overloaded(message: str = "Overloaded") -> Event:
    return {"type": "error", "error": {"type": "overloaded_error", "message": message}}


THINKING = {"type": "thinking", "thinking": "Need the weather.", "signature": "sig_abc"}
TOOL_USE = {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {"city": "Paris"}}
WITH_TOOL = fake_anthropic.answer(
    THINKING,
    fake_anthropic.text("Checking now."),
    TOOL_USE,
    stop_reason="tool_use",
    usage={"input_tokens": 25, "output_tokens": 30},
)


class AnthropicFake(fake_anthropic.FakeMessagesAPI):
    def stream(self, events: Sequence[Event], failure: Exception | None = None) -> None:
        self.replies.append(lambda request: sse_reply(events, failure))


@pytest.fixture
async def anthropic_api() -> AsyncIterator[AnthropicFake]:
    fake = AnthropicFake()
    yield fake
    await fake.close()


def ask_claude(*messages: Message, **fields: Any) -> Request:
    return fake_anthropic.ask(*(messages or (Message.user("Weather in Paris?"),)), **fields)


class TestAnthropicStream:
    def test_the_adapter_can_stream(self) -> None:
        """AnthropicAdapter satisfies StreamingAdapter."""
        assert isinstance(AnthropicAdapter(fake_anthropic.API_KEY), StreamingAdapter)

    async def test_a_text_answer_arrives_as_deltas(self, anthropic_api: AnthropicFake) -> None:
        """STREAM_START, a TEXT_DELTA per text delta, then FINISH with the whole answer; the
        request asked for a stream."""
        anthropic_api.stream(anthropic_events(fake_anthropic.answer(fake_anthropic.text("Hi!"))))
        events = await collect(anthropic_api.adapter().stream(ask_claude()))
        assert [e.kind for e in events] == [
            Kind.STREAM_START,
            Kind.TEXT_DELTA,
            Kind.TEXT_DELTA,
            Kind.FINISH,
        ]
        assert joined(events, Kind.TEXT_DELTA) == "Hi!" == finish(events).text
        assert events[-1].usage == finish(events).usage
        assert events[-1].finish_reason == finish(events).finish_reason
        assert anthropic_api.body()["stream"] is True

    async def test_a_tool_call_joins_its_argument_deltas(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """TOOL_CALL_START names the call, each TOOL_CALL_DELTA adds to its JSON text, and
        TOOL_CALL_END holds the parsed call that FINISH's response asks for."""
        anthropic_api.stream(anthropic_events(WITH_TOOL))
        events = await collect(anthropic_api.adapter().stream(ask_claude(tools=(WEATHER,))))
        calls = [e for e in events if e.tool_call is not None]
        assert [e.kind for e in calls] == [
            Kind.TOOL_CALL_START,
            Kind.TOOL_CALL_DELTA,
            Kind.TOOL_CALL_DELTA,
            Kind.TOOL_CALL_END,
        ]
        assert calls[0].tool_call == ToolCall("toolu_9", "get_weather", "")
        assert joined(events, Kind.TOOL_CALL_DELTA) == '{"city": "Paris"}'
        assert calls[2].tool_call == ToolCall("toolu_9", "get_weather", '{"city": "Paris"}')
        assert calls[3].tool_call == ToolCall("toolu_9", "get_weather", {"city": "Paris"})
        assert finish(events).tool_calls == [calls[3].tool_call]
        assert finish(events).finish_reason.reason == "tool_calls"

    async def test_thinking_reaches_finish_and_the_next_request(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """Thinking streams as REASONING_DELTAs; FINISH keeps it with its signature, and the
        next request sends the block back verbatim."""
        anthropic_api.stream(anthropic_events(WITH_TOOL))
        adapter = anthropic_api.adapter()
        events = await collect(adapter.stream(ask_claude(tools=(WEATHER,))))
        assert joined(events, Kind.REASONING_DELTA) == "Need the weather."
        first = finish(events)
        assert first.message.content[0].thinking == ThinkingData(
            "Need the weather.", signature="sig_abc", provider="anthropic"
        )

        anthropic_api.stream(anthropic_events(fake_anthropic.answer()))
        history = (
            Message.user("Weather in Paris?"),
            first.message,
            Message.tool_results([ToolResult("toolu_9", "21C sunny")]),
        )
        await collect(adapter.stream(ask_claude(*history, tools=(WEATHER,))))
        assert anthropic_api.body()["messages"][1]["content"] == [
            THINKING,
            fake_anthropic.text("Checking now."),
            TOOL_USE,
        ]

    @pytest.mark.parametrize(
        "message",
        [
            fake_anthropic.answer(fake_anthropic.text("Hello, world.")),
            WITH_TOOL,
            fake_anthropic.answer(
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                fake_anthropic.text("Done."),
            ),
            fake_anthropic.answer(
                fake_anthropic.text("Cached."),
                stop_reason="max_tokens",
                usage={
                    "input_tokens": 40,
                    "output_tokens": 12,
                    "cache_read_input_tokens": 1600,
                    "cache_creation_input_tokens": 200,
                    "output_tokens_details": {"thinking_tokens": 7},
                },
            ),
            fake_anthropic.answer(
                {"type": "server_tool_use", "id": "srv_1", "name": "web_search", "input": {}},
                fake_anthropic.text("Sunny."),
            ),
        ],
        ids=["text", "thinking-and-tool", "redacted-thinking", "cache-usage", "server-tool"],
    )
    async def test_finish_is_what_complete_returns(
        self, anthropic_api: AnthropicFake, message: dict[str, Any]
    ) -> None:
        """For the same content, FINISH's response equals complete()'s, warnings included."""
        anthropic_api.reply(message)
        anthropic_api.stream(anthropic_events(message))
        adapter = anthropic_api.adapter()
        request = ask_claude(tools=(WEATHER,), temperature=0.5)
        completed = await adapter.complete(request)
        streamed = finish(await collect(adapter.stream(request)))
        assert streamed == completed

    async def test_overloaded_mid_stream_is_a_retryable_server_error(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """An overloaded_error event after text has arrived raises a retryable ServerError
        with the provider's error type."""
        events = anthropic_events(fake_anthropic.answer(), stop=False)[:3]
        anthropic_api.stream([*events, overloaded()])
        seen, error = await events_then_error(anthropic_api.adapter().stream(ask_claude()))
        assert seen == [Kind.STREAM_START, Kind.TEXT_DELTA]
        assert type(error) is ServerError
        assert error.retryable
        assert (error.status_code, error.error_code) == (529, "overloaded_error")

    async def test_the_key_never_appears_in_a_mid_stream_error(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """An error event that echoes the key is reported without it."""
        start = anthropic_events(fake_anthropic.answer())[:1]
        anthropic_api.stream([*start, overloaded(f"Overloaded ({fake_anthropic.API_KEY})")])
        _, error = await events_then_error(anthropic_api.adapter().stream(ask_claude()))
        assert fake_anthropic.API_KEY not in str(error)
        assert "[redacted]" in str(error)

    async def test_a_dropped_connection_is_a_stream_error(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """A connection that breaks mid-stream is a retryable StreamError, without the key."""
        start = anthropic_events(fake_anthropic.answer())[:1]
        reset = httpx2.ReadError(f"connection reset ({fake_anthropic.API_KEY})")
        anthropic_api.stream(start, failure=reset)
        seen, error = await events_then_error(anthropic_api.adapter().stream(ask_claude()))
        assert seen == [Kind.STREAM_START]
        assert type(error) is StreamError
        assert error.retryable
        assert "connection reset" in str(error)
        assert fake_anthropic.API_KEY not in str(error)

    async def test_a_stream_without_message_stop_is_a_stream_error(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """A stream that ends before message_stop raises a StreamError, not a half answer."""
        anthropic_api.stream(anthropic_events(fake_anthropic.answer(), stop=False))
        seen, error = await events_then_error(anthropic_api.adapter().stream(ask_claude()))
        assert Kind.FINISH not in seen
        assert type(error) is StreamError

    async def test_an_http_error_is_raised_before_any_event(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """A 429 answer to the stream request raises its RateLimitError with retry-after."""
        anthropic_api.reply(
            fake_anthropic.error_body("rate_limit_error", "slow down"),
            status=429,
            headers={"retry-after": "4"},
        )
        seen, error = await events_then_error(anthropic_api.adapter().stream(ask_claude()))
        assert seen == []
        assert type(error) is RateLimitError
        assert error.retry_after == 4.0


# --- OpenAI --------------------------------------------------------------------------------


def openai_events(body: dict[str, Any]) -> list[Event]:
    """The Responses API stream that delivers ``body`` (a response) item by item, each text,
    argument string and summary in two deltas, ending with the event its status names."""
    events: list[Event] = [
        {
            "type": "response.created",
            "response": body | {"status": "in_progress", "output": [], "usage": None},
        }
    ]
    for index, item in enumerate(body["output"]):
        where = {"output_index": index, "item_id": item["id"]}
        if item["type"] == "message":
            added = item | {"status": "in_progress", "content": []}
        elif item["type"] == "function_call":
            added = item | {"status": "in_progress", "arguments": ""}
        else:
            added = item | {"summary": []}
        events.append({"type": "response.output_item.added", "output_index": index, "item": added})
        if item["type"] == "message":
            for part_index, part in enumerate(item["content"]):
                at = where | {"content_index": part_index}
                empty = part | {"text": ""}
                events.append({"type": "response.content_part.added", **at, "part": empty})
                events += [
                    {"type": "response.output_text.delta", **at, "delta": piece, "logprobs": []}
                    for piece in halves(part["text"])
                ]
                events.append(
                    {
                        "type": "response.output_text.done",
                        **at,
                        "text": part["text"],
                        "logprobs": [],
                    }
                )
                events.append({"type": "response.content_part.done", **at, "part": part})
        elif item["type"] == "function_call":
            events += [
                {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                for piece in halves(item["arguments"])
            ]
            events.append(
                {
                    "type": "response.function_call_arguments.done",
                    **where,
                    "name": item["name"],
                    "arguments": item["arguments"],
                }
            )
        else:
            for summary_index, summary in enumerate(item["summary"]):
                at = where | {"summary_index": summary_index}
                empty = summary | {"text": ""}
                events.append(
                    {"type": "response.reasoning_summary_part.added", **at, "part": empty}
                )
                events += [
                    {"type": "response.reasoning_summary_text.delta", **at, "delta": piece}
                    for piece in halves(summary["text"])
                ]
                events.append(
                    {"type": "response.reasoning_summary_text.done", **at, "text": summary["text"]}
                )
                events.append(
                    {"type": "response.reasoning_summary_part.done", **at, "part": summary}
                )
        events.append({"type": "response.output_item.done", "output_index": index, "item": item})
    events.append({"type": f"response.{body['status']}", "response": body})
    return numbered(events)


def numbered(events: Sequence[Event]) -> list[Event]:
    return [event | {"sequence_number": number} for number, event in enumerate(events)]


def openai_body(*output: dict[str, Any], **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(fake_openai.answer(*output, **fields).content)
    return body


def stream_error(code: str, message: str = "boom") -> Event:
    return {"type": "error", "code": code, "message": message, "param": None}


def failed(code: str, message: str = "boom") -> Event:
    body = openai_body(status="failed", error={"code": code, "message": message})
    return {"type": "response.failed", "response": body}


REASONING = fake_openai.reasoning_item("Look it up.", "Then answer.")
CALL = fake_openai.call_item('{"city": "Paris"}')


class OpenAIFake(fake_openai.FakeOpenAI):
    def stream(self, events: Sequence[Event], failure: Exception | None = None) -> None:
        self.replies.append(lambda request: sse_reply(events, failure))


@pytest.fixture
def openai_api() -> OpenAIFake:
    return OpenAIFake()


@pytest.fixture
async def openai_adapter(openai_api: OpenAIFake) -> AsyncIterator[OpenAIAdapter]:
    opened = openai_api.adapter()
    yield opened
    await opened.close()


def ask_gpt(*messages: Message, **fields: Any) -> Request:
    return fake_openai.request(*messages, **fields)


class TestOpenAIStream:
    def test_the_adapter_can_stream(self) -> None:
        """OpenAIAdapter satisfies StreamingAdapter."""
        assert isinstance(OpenAIAdapter(fake_openai.KEY), StreamingAdapter)

    async def test_a_text_answer_arrives_as_deltas(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter
    ) -> None:
        """STREAM_START on response.created, a TEXT_DELTA per text delta, then FINISH; the
        request asked for a stream."""
        openai_api.stream(openai_events(openai_body(fake_openai.text_item("It is 21C."))))
        events = await collect(openai_adapter.stream(ask_gpt()))
        assert [e.kind for e in events] == [
            Kind.STREAM_START,
            Kind.TEXT_DELTA,
            Kind.TEXT_DELTA,
            Kind.FINISH,
        ]
        assert joined(events, Kind.TEXT_DELTA) == "It is 21C." == finish(events).text
        assert openai_api.bodies[0]["stream"] is True

    async def test_a_tool_call_joins_its_argument_deltas(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter
    ) -> None:
        """TOOL_CALL_START names the call by its call_id, the deltas join into the arguments,
        and TOOL_CALL_END holds the parsed call that FINISH's response asks for."""
        openai_api.stream(openai_events(openai_body(CALL)))
        events = await collect(openai_adapter.stream(ask_gpt(tools=(WEATHER,))))
        calls = [e for e in events if e.tool_call is not None]
        assert [e.kind for e in calls] == [
            Kind.TOOL_CALL_START,
            Kind.TOOL_CALL_DELTA,
            Kind.TOOL_CALL_DELTA,
            Kind.TOOL_CALL_END,
        ]
        assert calls[0].tool_call == ToolCall("call_1", "get_weather", "")
        assert joined(events, Kind.TOOL_CALL_DELTA) == '{"city": "Paris"}'
        assert calls[3].tool_call == ToolCall("call_1", "get_weather", {"city": "Paris"})
        assert finish(events).tool_calls == [calls[3].tool_call]
        assert finish(events).finish_reason.reason == "tool_calls"

    async def test_reasoning_reaches_finish_and_the_next_request(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter
    ) -> None:
        """Summary deltas join into the response's reasoning; FINISH keeps the raw reasoning
        item, and the next request sends it back verbatim, encrypted content included."""
        openai_api.stream(openai_events(openai_body(REASONING, CALL)))
        events = await collect(openai_adapter.stream(ask_gpt(tools=(WEATHER,))))
        first = finish(events)
        assert joined(events, Kind.REASONING_DELTA) == "Look it up.\n\nThen answer."
        assert first.reasoning == "Look it up.\n\nThen answer."
        assert list(first.message.provider_items["openai"]) == [REASONING, CALL]

        openai_api.stream(openai_events(openai_body(fake_openai.text_item("21C."))))
        history = (
            Message.user("Weather in Paris?"),
            first.message,
            Message.tool_results([ToolResult("call_1", "21C sunny")]),
        )
        await collect(openai_adapter.stream(ask_gpt(*history, tools=(WEATHER,))))
        sent = openai_api.bodies[1]["input"]
        assert sent[1:3] == [REASONING, CALL]
        assert sent[1]["encrypted_content"] == "enc-opaque-1"

    @pytest.mark.parametrize(
        "body",
        [
            openai_body(fake_openai.text_item("Hello, world.")),
            openai_body(REASONING, fake_openai.text_item("Checking."), CALL),
            openai_body(fake_openai.call_item("{not json")),
            openai_body(
                fake_openai.text_item("Par"),
                status="incomplete",
                incomplete="max_output_tokens",
                usage=fake_openai.usage_json(60, 16, cached=24, reasoning=8),
            ),
        ],
        ids=["text", "reasoning-and-call", "raw-arguments", "incomplete"],
    )
    async def test_finish_is_what_complete_returns(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter, body: dict[str, Any]
    ) -> None:
        """For the same content, FINISH's response equals complete()'s, warnings included."""
        openai_api.replies.append(httpx2.Response(200, json=body))
        openai_api.stream(openai_events(body))
        request = ask_gpt(tools=(WEATHER,), stop_sequences=("END",))
        completed = await openai_adapter.complete(request)
        streamed = finish(await collect(openai_adapter.stream(request)))
        assert streamed == completed

    @pytest.mark.parametrize(
        ("event", "kind", "retryable"),
        [
            (stream_error("server_error"), ServerError, True),
            (stream_error("rate_limit_exceeded"), RateLimitError, True),
            (stream_error("something_new"), StreamError, True),
            (failed("server_error"), ServerError, True),
            (failed("rate_limit_exceeded"), RateLimitError, True),
            (failed("bio_policy"), ContentFilterError, False),
        ],
        ids=[
            "error-server",
            "error-rate",
            "error-unknown",
            "failed-server",
            "failed-rate",
            "policy",
        ],
    )
    async def test_a_failure_event_mid_stream_raises_its_error(
        self,
        openai_api: OpenAIFake,
        openai_adapter: OpenAIAdapter,
        event: Event,
        kind: type[LLMError],
        retryable: bool,
    ) -> None:
        """An error or response.failed event after text has arrived raises the error its
        code stands for (an unknown code: a StreamError), retryable as that class is."""
        events = openai_events(openai_body(fake_openai.text_item("Hello")))[:4]
        openai_api.stream(numbered([*events, event]))
        seen, error = await events_then_error(openai_adapter.stream(ask_gpt()))
        assert seen[0] is Kind.STREAM_START
        assert Kind.FINISH not in seen
        assert type(error) is kind
        assert error.retryable is retryable
        code = event["code"] if event["type"] == "error" else event["response"]["error"]["code"]
        assert error.error_code == code

    async def test_the_key_never_appears_in_a_mid_stream_error(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter
    ) -> None:
        """An error event that echoes the key is reported without it."""
        openai_api.stream(numbered([stream_error("server_error", f"bad key {fake_openai.KEY}")]))
        _, error = await events_then_error(openai_adapter.stream(ask_gpt()))
        assert fake_openai.KEY not in str(error)
        assert "[redacted]" in str(error)

    async def test_a_dropped_connection_is_a_stream_error(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter
    ) -> None:
        """A connection that breaks mid-stream is a retryable StreamError, without the key."""
        start = openai_events(openai_body(fake_openai.text_item("Hello")))[:1]
        openai_api.stream(start, failure=httpx2.ReadError(f"reset ({fake_openai.KEY})"))
        seen, error = await events_then_error(openai_adapter.stream(ask_gpt()))
        assert seen == [Kind.STREAM_START]
        assert type(error) is StreamError
        assert error.retryable
        assert fake_openai.KEY not in str(error)

    async def test_a_stream_without_a_final_event_is_a_stream_error(
        self, openai_api: OpenAIFake, openai_adapter: OpenAIAdapter
    ) -> None:
        """A stream that ends before response.completed raises a StreamError."""
        openai_api.stream(openai_events(openai_body(fake_openai.text_item("Hello")))[:-1])
        seen, error = await events_then_error(openai_adapter.stream(ask_gpt()))
        assert Kind.FINISH not in seen
        assert type(error) is StreamError


# --- Client.stream -------------------------------------------------------------------------


class TestClientStream:
    def test_importing_the_client_leaves_the_sdks_unloaded(self) -> None:
        """Importing orchestra.llm.client (and its stream types) imports neither SDK."""
        code = (
            "import sys\n"
            "import orchestra.llm.client, orchestra.llm.types\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('anthropic', 'openai')))\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert done.stdout.strip() == "[]"

    def test_an_adapter_without_stream_is_a_configuration_error(self) -> None:
        """A provider whose adapter cannot stream is refused when stream() is called."""
        client = Client({"scripted": ScriptedModel([model_says("hi")])})
        with pytest.raises(ConfigurationError, match="'scripted' cannot stream"):
            client.stream(ask_claude())

    async def test_routes_to_the_requests_provider(
        self, anthropic_api: AnthropicFake, openai_api: OpenAIFake
    ) -> None:
        """A request naming its provider streams from that provider's adapter."""
        openai_api.stream(openai_events(openai_body(fake_openai.text_item("from openai"))))
        adapter = openai_api.adapter()
        client = Client({"anthropic": anthropic_api.adapter(), "openai": adapter})
        events = await collect(client.stream(ask_gpt(provider="openai")))
        await adapter.close()
        assert finish(events).text == "from openai"
        assert anthropic_api.requests == []

    async def test_a_429_before_the_first_event_is_retried_after_retry_after(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """A 429 to the stream request is retried after its retry-after; the caller sees
        only the second attempt's events."""
        anthropic_api.reply(
            fake_anthropic.error_body("rate_limit_error", "slow down"),
            status=429,
            headers={"retry-after": "3"},
        )
        anthropic_api.stream(anthropic_events(fake_anthropic.answer(fake_anthropic.text("ok"))))
        sleep = RecordingSleep()
        client = Client({"anthropic": anthropic_api.adapter()}, sleep=sleep)
        events = await collect(client.stream(ask_claude()))
        assert events[0].kind is Kind.STREAM_START
        assert finish(events).text == "ok"
        assert sleep.delays == [3.0]
        assert len(anthropic_api.requests) == 2

    async def test_an_overload_before_the_first_event_is_retried(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """An overloaded_error event that opens the stream (a 529) is retried with backoff,
        and on_retry hears of it."""
        anthropic_api.stream([overloaded()])
        anthropic_api.stream(anthropic_events(fake_anthropic.answer(fake_anthropic.text("ok"))))
        sleep = RecordingSleep()
        retries: list[tuple[LLMError, int, float]] = []
        client = Client(
            {"anthropic": anthropic_api.adapter()},
            retry=RetryPolicy(base_delay=1.5, jitter=False),
            sleep=sleep,
            on_retry=lambda error, attempt, delay: retries.append((error, attempt, delay)),
        )
        events = await collect(client.stream(ask_claude()))
        assert finish(events).text == "ok"
        assert sleep.delays == [1.5]
        assert [(type(e), e.status_code, n, d) for e, n, d in retries] == [
            (ServerError, 529, 1, 1.5)
        ]

    async def test_an_openai_429_before_the_first_event_is_retried(
        self, openai_api: OpenAIFake
    ) -> None:
        """OpenAI's 429 with retry-after is retried the same way."""
        openai_api.replies.append(
            fake_openai.failure(429, "Rate limit reached.", headers={"retry-after": "2"})
        )
        openai_api.stream(openai_events(openai_body(fake_openai.text_item("Recovered."))))
        adapter = openai_api.adapter()
        sleep = RecordingSleep()
        events = await collect(Client({"openai": adapter}, sleep=sleep).stream(ask_gpt()))
        await adapter.close()
        assert finish(events).text == "Recovered."
        assert sleep.delays == [2.0]
        assert len(openai_api.requests) == 2

    async def test_an_error_after_an_event_was_delivered_is_not_retried(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """Once STREAM_START reached the caller, an overload propagates at once: retrying
        would replay what the caller already saw."""
        start = anthropic_events(fake_anthropic.answer())[:1]
        anthropic_api.stream([*start, overloaded()])
        anthropic_api.stream(anthropic_events(fake_anthropic.answer()))
        sleep = RecordingSleep()
        client = Client(
            {"anthropic": anthropic_api.adapter()}, sleep=sleep, retry=RetryPolicy(max_retries=5)
        )
        seen, error = await events_then_error(client.stream(ask_claude()))
        assert seen == [Kind.STREAM_START]
        assert type(error) is ServerError
        assert error.retryable
        assert sleep.delays == []
        assert len(anthropic_api.requests) == 1

    async def test_an_openai_error_after_an_event_is_not_retried(
        self, openai_api: OpenAIFake
    ) -> None:
        """An OpenAI server_error event after text was delivered propagates, unretried."""
        events = openai_events(openai_body(fake_openai.text_item("Hello")))[:4]
        openai_api.stream(numbered([*events, stream_error("server_error")]))
        adapter = openai_api.adapter()
        sleep = RecordingSleep()
        seen, error = await events_then_error(
            Client({"openai": adapter}, sleep=sleep).stream(ask_gpt())
        )
        await adapter.close()
        assert Kind.TEXT_DELTA in seen
        assert type(error) is ServerError
        assert sleep.delays == []
        assert len(openai_api.requests) == 1

    async def test_an_error_retrying_cannot_fix_is_raised_at_once(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """A 401 to the stream request is not retried."""
        anthropic_api.reply(
            fake_anthropic.error_body("authentication_error", "invalid x-api-key"), status=401
        )
        sleep = RecordingSleep()
        client = Client({"anthropic": anthropic_api.adapter()}, sleep=sleep)
        with pytest.raises(AuthenticationError):
            await collect(client.stream(ask_claude()))
        assert sleep.delays == []

    async def test_leaving_a_stream_early_closes_the_connection(
        self, anthropic_api: AnthropicFake
    ) -> None:
        """Closing the client's stream after the first event closes the HTTP response."""
        body = ServedStream(anthropic_events(fake_anthropic.answer()))
        anthropic_api.replies.append(
            lambda request: httpx2.Response(
                200, stream=body, headers={"content-type": "text/event-stream"}
            )
        )
        client = Client({"anthropic": anthropic_api.adapter()})
        async with aclosing(client.stream(ask_claude())) as events:
            async for event in events:
                assert event.kind is Kind.STREAM_START
                break
        assert body.closed
