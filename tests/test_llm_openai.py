"""The OpenAI adapter over the Responses API, against an in-process fake of ``/v1/responses``
(``httpx2.MockTransport``: no network, no sleeps)."""

from __future__ import annotations

import json
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx2
import pytest

from orchestra.llm.client import Client, ProviderAdapter, RetryPolicy
from orchestra.llm.errors import (
    AccessDeniedError,
    AuthenticationError,
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    LLMError,
    NetworkError,
    NotFoundError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
)
from orchestra.llm.openai import OpenAIAdapter
from orchestra.llm.types import (
    ContentKind,
    ContentPart,
    Message,
    Request,
    Role,
    ThinkingData,
    ToolCall,
    ToolDefinition,
    ToolResult,
    Usage,
)
from orchestra.testing import RecordingSleep

KEY = "sk-test-0123456789-very-secret"
BASE_URL = "http://openai.test/v1"
WEATHER = ToolDefinition(
    "get_weather",
    "Weather for a city",
    {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

Reply = httpx2.Response | Callable[[httpx2.Request], httpx2.Response]


def usage_json(
    input_tokens: int = 10, output_tokens: int = 5, *, cached: int = 0, reasoning: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": reasoning},
    }


def text_item(text: str, item_id: str = "msg_1") -> dict[str, Any]:
    return {
        "type": "message",
        "id": item_id,
        "role": "assistant",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def call_item(arguments: str = '{"city": "Paris"}', call_id: str = "call_1") -> dict[str, Any]:
    return {
        "type": "function_call",
        "id": "fc_1",
        "call_id": call_id,
        "name": "get_weather",
        "arguments": arguments,
        "status": "completed",
    }


def reasoning_item(*summary: str, encrypted: str = "enc-opaque-1") -> dict[str, Any]:
    return {
        "type": "reasoning",
        "id": "rs_1",
        "summary": [{"type": "summary_text", "text": text} for text in summary],
        "encrypted_content": encrypted,
    }


def answer(
    *output: dict[str, Any],
    status: str = "completed",
    usage: dict[str, Any] | None = None,
    incomplete: str | None = None,
    error: dict[str, Any] | None = None,
    response_id: str = "resp_1",
) -> httpx2.Response:
    """A 200 from ``/v1/responses`` with these output items."""
    body = {
        "id": response_id,
        "object": "response",
        "created_at": 1700000000,
        "model": "gpt-5.2",
        "status": status,
        "output": list(output),
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "usage": usage_json() if usage is None else usage,
    }
    return httpx2.Response(200, json=body)


def failure(
    status: int,
    message: str = "m",
    *,
    code: str | None = None,
    kind: str = "invalid_request_error",
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """An OpenAI error answer: ``{"error": {message, type, code}}``."""
    error = {"message": message, "type": kind, "param": None, "code": code}
    return httpx2.Response(status, json={"error": error}, headers=headers or {})


class FakeOpenAI:
    """Answers each request with the next scripted reply; records what was sent."""

    def __init__(self, *replies: Reply) -> None:
        self.replies = list(replies)
        self.requests: list[httpx2.Request] = []

    def handler(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        reply = self.replies.pop(0)
        return reply(request) if callable(reply) else reply

    @property
    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(request.content) for request in self.requests]

    def adapter(self) -> OpenAIAdapter:
        transport = httpx2.MockTransport(self.handler)
        return OpenAIAdapter(
            KEY, base_url=BASE_URL, http_client=httpx2.AsyncClient(transport=transport)
        )


@pytest.fixture
def server() -> FakeOpenAI:
    return FakeOpenAI()


@pytest.fixture
async def adapter(server: FakeOpenAI) -> AsyncIterator[OpenAIAdapter]:
    opened = server.adapter()
    yield opened
    await opened.close()


def request(*messages: Message, **fields: Any) -> Request:
    return Request(model="gpt-5.2", messages=messages or (Message.user("hi"),), **fields)


async def sent_body(server: FakeOpenAI, adapter: OpenAIAdapter, req: Request) -> dict[str, Any]:
    """The JSON body ``req`` is sent as."""
    server.replies.append(answer(text_item("ok")))
    await adapter.complete(req)
    return server.bodies[-1]


class TestAdapter:
    def test_is_the_openai_provider_adapter(self) -> None:
        """The adapter satisfies ProviderAdapter under the name "openai"."""
        adapter = OpenAIAdapter(KEY)
        assert isinstance(adapter, ProviderAdapter)
        assert adapter.name == "openai"

    def test_an_empty_key_is_a_configuration_error(self) -> None:
        """No key: a ConfigurationError naming OPENAI_API_KEY, before any request."""
        with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
            OpenAIAdapter("")

    def test_the_sdk_is_imported_only_when_used(self) -> None:
        """Importing the module and building an adapter leave `openai` out of sys.modules."""
        code = (
            "import sys\n"
            "from orchestra.llm.openai import OpenAIAdapter\n"
            "OpenAIAdapter('k')\n"
            "loaded = sorted(m for m in sys.modules if m == 'openai' or m.startswith('openai.'))\n"
            "assert not loaded, loaded\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0, done.stderr

    async def test_close_closes_the_http_client(self, server: FakeOpenAI) -> None:
        """close() closes the given HTTP client, whether or not a request was made."""
        for used in (False, True):
            http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(server.handler))
            adapter = OpenAIAdapter(KEY, base_url=BASE_URL, http_client=http_client)
            if used:
                server.replies.append(answer(text_item("ok")))
                await adapter.complete(request())
            await adapter.close()
            assert http_client.is_closed


class TestRequestBody:
    async def test_posts_to_responses_with_the_key_as_bearer(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """One POST to /v1/responses, authorised with the key, for the request's model."""
        body = await sent_body(server, adapter, request())
        sent = server.requests[0]
        assert (sent.method, sent.url.path) == ("POST", "/v1/responses")
        assert sent.headers["authorization"] == f"Bearer {KEY}"
        assert body["model"] == "gpt-5.2"

    async def test_requests_are_stateless_and_ask_for_encrypted_reasoning(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """store=False and include=["reasoning.encrypted_content"] on every request."""
        body = await sent_body(server, adapter, request())
        assert body["store"] is False
        assert body["include"] == ["reasoning.encrypted_content"]

    @pytest.mark.parametrize("model", ["gpt-4.1-mini", "gpt-4o", "gpt-3.5-turbo"])
    async def test_models_that_do_not_reason_are_not_asked_for_reasoning(
        self, server: FakeOpenAI, adapter: OpenAIAdapter, model: str
    ) -> None:
        """OpenAI refuses include=["reasoning.encrypted_content"] for these models."""
        req = Request(model=model, messages=(Message.user("hi"),))
        body = await sent_body(server, adapter, req)
        assert "include" not in body

    async def test_system_and_developer_messages_become_instructions(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """System and developer texts are joined into `instructions`, not input items."""
        developer = Message(Role.DEVELOPER, (ContentPart.of_text("Use metric units."),))
        body = await sent_body(
            server, adapter, request(Message.system("Be terse."), developer, Message.user("hi"))
        )
        assert body["instructions"] == "Be terse.\n\nUse metric units."
        assert [item["role"] for item in body["input"]] == ["user"]

    async def test_user_and_assistant_text_become_message_items(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """User text goes as input_text parts, assistant text as an assistant message."""
        body = await sent_body(
            server,
            adapter,
            request(Message.user("Hello"), Message.assistant("Hi."), Message.user("Weather?")),
        )
        assert body["input"] == [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Hello"}],
            },
            {"type": "message", "role": "assistant", "content": "Hi."},
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Weather?"}],
            },
        ]

    async def test_tool_calls_and_results_become_function_call_items(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """An assistant's calls go as function_call items (arguments as JSON text, raw text
        as is), the results as function_call_output items, in order."""
        calls = Message(
            Role.ASSISTANT,
            (
                ContentPart.of_text("Checking."),
                ContentPart(
                    ContentKind.TOOL_CALL,
                    tool_call=ToolCall("c1", "get_weather", {"city": "Paris"}),
                ),
                ContentPart(ContentKind.TOOL_CALL, tool_call=ToolCall("c2", "get_weather", "{bad")),
            ),
        )
        results = Message.tool_results([ToolResult("c1", "21C"), ToolResult("c2", "no", True)])
        body = await sent_body(server, adapter, request(Message.user("Weather?"), calls, results))
        assert body["input"][1:] == [
            {"type": "message", "role": "assistant", "content": "Checking."},
            {
                "type": "function_call",
                "call_id": "c1",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
            },
            {"type": "function_call", "call_id": "c2", "name": "get_weather", "arguments": "{bad"},
            {"type": "function_call_output", "call_id": "c1", "output": "21C"},
            {"type": "function_call_output", "call_id": "c2", "output": "no"},
        ]

    async def test_thinking_without_raw_items_is_not_sent(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """Thinking on an assistant message that has no OpenAI items is dropped."""
        assistant = Message(
            Role.ASSISTANT,
            (
                ContentPart(
                    ContentKind.THINKING, thinking=ThinkingData("hmm", "sig", provider="x")
                ),
                ContentPart.of_text("Hi."),
            ),
        )
        body = await sent_body(server, adapter, request(Message.user("hi"), assistant))
        assert body["input"][1:] == [{"type": "message", "role": "assistant", "content": "Hi."}]

    async def test_tools_are_flat_function_definitions_with_auto_choice(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """Tools go flat with strict=False; with no tool_choice it is "auto"."""
        body = await sent_body(server, adapter, request(tools=(WEATHER,)))
        assert body["tools"] == [
            {
                "type": "function",
                "name": "get_weather",
                "description": "Weather for a city",
                "parameters": dict(WEATHER.parameters),
                "strict": False,
            }
        ]
        assert body["tool_choice"] == "auto"

    @pytest.mark.parametrize(
        ("choice", "sent"),
        [
            ("auto", "auto"),
            ("none", "none"),
            ("required", "required"),
            ("get_weather", {"type": "function", "name": "get_weather"}),
        ],
    )
    async def test_tool_choice_modes(
        self, server: FakeOpenAI, adapter: OpenAIAdapter, choice: str, sent: Any
    ) -> None:
        """auto, none and required go as strings; a tool's name as a function choice."""
        body = await sent_body(server, adapter, request(tools=(WEATHER,), tool_choice=choice))
        assert body["tool_choice"] == sent

    async def test_limits_effort_and_temperature(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """max_tokens, reasoning_effort and temperature map to their Responses fields."""
        body = await sent_body(
            server,
            adapter,
            request(max_tokens=4096, reasoning_effort="high", temperature=0.2),
        )
        assert body["max_output_tokens"] == 4096
        assert body["reasoning"] == {"effort": "high"}
        assert body["temperature"] == 0.2

    async def test_unset_fields_are_not_sent(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """Without tools, limits, effort or a system prompt, none of their fields is sent."""
        body = await sent_body(server, adapter, request())
        absent = {"instructions", "tools", "tool_choice", "max_output_tokens", "reasoning"}
        assert absent.isdisjoint(body)
        assert "temperature" not in body

    async def test_openai_provider_options_are_passed_through(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """provider_options["openai"] reach the body and win; other providers' are ignored."""
        options = {
            "openai": {
                "parallel_tool_calls": False,
                "reasoning": {"effort": "low", "summary": "auto"},
            },
            "anthropic": {"beta_headers": ["x"]},
        }
        body = await sent_body(
            server, adapter, request(reasoning_effort="high", provider_options=options)
        )
        assert body["parallel_tool_calls"] is False
        assert body["reasoning"] == {"effort": "low", "summary": "auto"}
        assert "beta_headers" not in body

    async def test_stop_sequences_are_ignored_with_a_warning(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """The Responses API has no stop sequences: not sent, and the response warns."""
        server.replies.append(answer(text_item("ok")))
        response = await adapter.complete(request(stop_sequences=("END",)))
        assert "stop" not in server.bodies[0]
        assert any("stop_sequences" in warning for warning in response.warnings)


class TestResponse:
    async def test_text_output(self, server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
        """output_text parts become the assistant message's text."""
        server.replies.append(answer(text_item("It is 21C."), response_id="resp_9"))
        response = await adapter.complete(request())
        assert (response.id, response.model, response.provider) == ("resp_9", "gpt-5.2", "openai")
        assert response.message.role is Role.ASSISTANT
        assert response.text == "It is 21C."
        assert response.tool_calls == []

    async def test_function_calls_have_parsed_arguments(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """A function_call becomes a ToolCall keyed by call_id, with arguments as a dict."""
        server.replies.append(answer(call_item('{"city": "Paris"}', call_id="call_7")))
        response = await adapter.complete(request(tools=(WEATHER,)))
        assert response.tool_calls == [ToolCall("call_7", "get_weather", {"city": "Paris"})]

    @pytest.mark.parametrize("arguments", ['{"city": Paris', '["Paris"]', ""])
    async def test_arguments_that_are_not_a_json_object_stay_raw(
        self, server: FakeOpenAI, adapter: OpenAIAdapter, arguments: str
    ) -> None:
        """Arguments that do not parse to a JSON object are kept as the raw text."""
        server.replies.append(answer(call_item(arguments)))
        response = await adapter.complete(request(tools=(WEATHER,)))
        assert response.tool_calls[0].arguments == arguments

    async def test_reasoning_becomes_thinking_and_raw_items_are_kept(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """A reasoning item's summary becomes ThinkingData; every raw output item is kept in
        provider_items["openai"], in order."""
        output = (reasoning_item("Look up.", "Then answer."), text_item("21C."))
        server.replies.append(answer(*output))
        response = await adapter.complete(request())
        thinking = [p.thinking for p in response.message.content if p.thinking is not None]
        assert thinking == [ThinkingData("Look up.\n\nThen answer.", provider="openai")]
        assert response.reasoning == "Look up.\n\nThen answer."
        assert list(response.message.provider_items["openai"]) == list(output)

    async def test_usage_counts_reasoning_and_cached_tokens(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """Usage carries input, output, reasoning and cached-input tokens."""
        server.replies.append(
            answer(text_item("ok"), usage=usage_json(60, 16, cached=24, reasoning=8))
        )
        response = await adapter.complete(request())
        assert response.usage == Usage(
            60, 16, reasoning_tokens=8, cache_read_tokens=24, cache_write_tokens=0
        )

    async def test_an_answer_without_cache_writes_leaves_them_unknown(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """Usage from an answer that predates cache_write_tokens has cache writes None."""
        usage = usage_json(60, 16, cached=24)
        del usage["input_tokens_details"]["cache_write_tokens"]
        server.replies.append(answer(text_item("ok"), usage=usage))
        response = await adapter.complete(request())
        assert (response.usage.cache_read_tokens, response.usage.cache_write_tokens) == (24, None)

    async def test_no_usage_is_zero_usage(self, server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
        """A response without usage reports empty Usage."""
        response = answer(text_item("ok"))
        body = json.loads(response.content)
        body["usage"] = None
        server.replies.append(httpx2.Response(200, json=body))
        assert (await adapter.complete(request())).usage == Usage()


class TestFinishReason:
    @pytest.mark.parametrize(
        ("reply", "reason", "raw"),
        [
            (answer(text_item("done")), "stop", "completed"),
            (answer(text_item("Checking."), call_item()), "tool_calls", "completed"),
            (
                answer(text_item("Par"), status="incomplete", incomplete="max_output_tokens"),
                "length",
                "max_output_tokens",
            ),
            (
                answer(status="incomplete", incomplete="content_filter"),
                "content_filter",
                "content_filter",
            ),
            (
                answer(status="failed", error={"code": "server_error", "message": "boom"}),
                "error",
                "failed",
            ),
        ],
        ids=["completed", "tool-calls", "max-output-tokens", "content-filter", "failed"],
    )
    async def test_derived_from_the_status(
        self,
        server: FakeOpenAI,
        adapter: OpenAIAdapter,
        reply: httpx2.Response,
        reason: str,
        raw: str,
    ) -> None:
        """completed gives stop or tool_calls, incomplete gives length or content_filter by
        its reason, failed gives error."""
        server.replies.append(reply)
        finish = (await adapter.complete(request())).finish_reason
        assert (finish.reason, finish.raw) == (reason, raw)

    async def test_a_failed_response_warns_with_its_error(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """A failed response carries the provider's error code and message as a warning."""
        server.replies.append(
            answer(status="failed", error={"code": "server_error", "message": "boom"})
        )
        response = await adapter.complete(request())
        assert response.warnings == ("response failed: server_error: boom",)


class TestToolRoundTrip:
    async def test_reasoning_is_echoed_verbatim_on_the_next_turn(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """Through Client: the second request carries the first response's reasoning item
        (with encrypted_content) and function_call verbatim, then the tool's output."""
        first_output = (reasoning_item("Need the weather."), call_item())
        server.replies += [
            answer(*first_output, usage=usage_json(30, 15, reasoning=8)),
            answer(
                text_item("21C and sunny."),
                usage=usage_json(60, 6, cached=24),
                response_id="resp_2",
            ),
        ]
        client = Client({"openai": adapter})
        history = [Message.system("Be terse."), Message.user("Weather in Paris?")]

        first = await client.complete(request(*history, tools=(WEATHER,)))
        assert first.finish_reason.reason == "tool_calls"
        results = [ToolResult(call.id, "21C sunny") for call in first.tool_calls]
        history += [first.message, Message.tool_results(results)]
        second = await client.complete(request(*history, tools=(WEATHER,)))

        assert server.bodies[1]["input"] == [
            {
                "type": "message",
                "role": "user",
                "content": [{"type": "input_text", "text": "Weather in Paris?"}],
            },
            first_output[0],
            first_output[1],
            {"type": "function_call_output", "call_id": "call_1", "output": "21C sunny"},
        ]
        assert server.bodies[1]["input"][1]["encrypted_content"] == "enc-opaque-1"
        assert second.text == "21C and sunny."
        assert second.finish_reason.reason == "stop"
        assert (first.usage + second.usage).cache_read_tokens == 24


class TestErrors:
    @pytest.mark.parametrize(
        ("reply", "kind", "retryable"),
        [
            (failure(400, "Unknown parameter: 'x'."), InvalidRequestError, False),
            (
                failure(400, "Input exceeds the limit.", code="context_length_exceeded"),
                ContextLengthError,
                False,
            ),
            (
                failure(401, "Incorrect API key provided.", code="invalid_api_key"),
                AuthenticationError,
                False,
            ),
            (
                failure(403, "Project lacks access.", kind="permission_error"),
                AccessDeniedError,
                False,
            ),
            (
                failure(404, "The model `gpt-9` does not exist.", code="model_not_found"),
                NotFoundError,
                False,
            ),
            (
                failure(429, "Rate limit reached.", code="rate_limit_exceeded", kind="requests"),
                RateLimitError,
                True,
            ),
            (
                failure(
                    429,
                    "You exceeded your current quota.",
                    code="insufficient_quota",
                    kind="insufficient_quota",
                ),
                QuotaExceededError,
                False,
            ),
            (failure(500, "The server had an error.", kind="server_error"), ServerError, True),
            (failure(503, "Slow down.", kind="server_error"), ServerError, True),
            (failure(408, "Request timed out.", kind="timeout"), RequestTimeoutError, False),
        ],
        ids=["400", "400-context", "401", "403", "404", "429", "429-quota", "500", "503", "408"],
    )
    async def test_status_gives_the_error_class(
        self,
        server: FakeOpenAI,
        adapter: OpenAIAdapter,
        reply: httpx2.Response,
        kind: type[LLMError],
        retryable: bool,
    ) -> None:
        """Each status (refined by OpenAI's error code) raises its class, retryable or not,
        with the provider, status and code on it."""
        server.replies.append(reply)
        with pytest.raises(LLMError) as caught:
            await adapter.complete(request())
        error = caught.value
        assert type(error) is kind
        assert error.retryable is retryable
        assert (error.provider, error.status_code) == ("openai", reply.status_code)
        assert error.error_code

    async def test_the_message_names_what_went_wrong(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """The message carries the provider's text, the status and the error code."""
        server.replies.append(
            failure(404, "The model `gpt-9` does not exist.", code="model_not_found")
        )
        with pytest.raises(NotFoundError) as caught:
            await adapter.complete(request())
        assert str(caught.value) == (
            "OpenAI: The model `gpt-9` does not exist. (status 404, model_not_found)"
        )

    @pytest.mark.parametrize(
        ("headers", "seconds"),
        [
            ({"retry-after": "7"}, 7.0),
            ({"retry-after": "1.5"}, 1.5),
            ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
            ({"retry-after": "not a time"}, None),
            ({}, None),
        ],
        ids=["seconds", "fraction", "milliseconds-first", "garbage", "absent"],
    )
    async def test_retry_after_is_read_in_seconds(
        self,
        server: FakeOpenAI,
        adapter: OpenAIAdapter,
        headers: dict[str, str],
        seconds: float | None,
    ) -> None:
        """retry-after-ms, else retry-after in seconds (an HTTP date too: see the shared
        helper's tests); anything unreadable is no hint."""
        server.replies.append(failure(429, "Rate limit reached.", headers=headers))
        with pytest.raises(RateLimitError) as caught:
            await adapter.complete(request())
        assert caught.value.retry_after == seconds

    async def test_the_sdk_does_not_retry(self, server: FakeOpenAI, adapter: OpenAIAdapter) -> None:
        """A retryable failure reaches the caller after one HTTP request: Client retries."""
        server.replies.append(
            failure(503, "busy", kind="server_error", headers={"retry-after": "0"})
        )
        with pytest.raises(ServerError):
            await adapter.complete(request())
        assert len(server.requests) == 1

    async def test_a_connection_failure_is_a_network_error(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """A refused connection raises a retryable NetworkError."""

        def refuse(req: httpx2.Request) -> httpx2.Response:
            raise httpx2.ConnectError("connection refused", request=req)

        server.replies.append(refuse)
        with pytest.raises(NetworkError, match="connection refused") as caught:
            await adapter.complete(request())
        assert caught.value.retryable is True

    async def test_a_timeout_is_a_request_timeout(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """A read timeout raises a RequestTimeoutError, not retried by default."""

        def stall(req: httpx2.Request) -> httpx2.Response:
            raise httpx2.ReadTimeout("timed out", request=req)

        server.replies.append(stall)
        with pytest.raises(RequestTimeoutError) as caught:
            await adapter.complete(request())
        assert caught.value.retryable is False

    @pytest.mark.parametrize("status", [400, 401, 403, 404, 429, 500, 503, 0])
    async def test_the_api_key_never_appears_in_an_error(
        self, server: FakeOpenAI, adapter: OpenAIAdapter, status: int
    ) -> None:
        """Even when the server (or the transport) echoes the key, neither the error's
        message nor its traceback shows it."""

        def echo_key(req: httpx2.Request) -> httpx2.Response:
            if status == 0:
                raise httpx2.ConnectError(f"refused for {KEY}", request=req)
            return failure(status, f"Incorrect API key provided: {KEY}.", code="invalid_api_key")

        server.replies.append(echo_key)
        with pytest.raises(LLMError) as caught:
            await adapter.complete(request())
        error = caught.value
        assert KEY not in str(error)
        assert KEY not in error.message
        assert KEY not in "".join(traceback.format_exception(error))
        assert "[redacted]" in str(error)


class TestRetryThroughClient:
    async def test_a_rate_limit_is_retried_after_its_retry_after(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """429 with retry-after 2, then 200: Client waits 2 s (recorded) and succeeds."""
        server.replies += [
            failure(
                429, "Rate limit reached.", code="rate_limit_exceeded", headers={"retry-after": "2"}
            ),
            answer(text_item("Recovered.")),
        ]
        sleep = RecordingSleep()
        client = Client({"openai": adapter}, retry=RetryPolicy(max_retries=2), sleep=sleep)
        response = await client.complete(request())
        assert response.text == "Recovered."
        assert sleep.delays == [2.0]
        assert len(server.requests) == 2

    async def test_a_spent_quota_is_not_retried(
        self, server: FakeOpenAI, adapter: OpenAIAdapter
    ) -> None:
        """429 insufficient_quota: raised at once as QuotaExceededError, no wait."""
        server.replies.append(
            failure(429, "You exceeded your current quota.", code="insufficient_quota")
        )
        sleep = RecordingSleep()
        with pytest.raises(QuotaExceededError):
            await Client({"openai": adapter}, sleep=sleep).complete(request())
        assert sleep.delays == []
        assert len(server.requests) == 1
