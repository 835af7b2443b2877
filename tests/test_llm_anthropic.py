"""The Anthropic adapter against a fake Messages API (``httpx2.MockTransport``, no network):
the request body it sends, the response it reads, and the errors it raises."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anthropic
import httpx2
import pytest

from orchestra.llm.anthropic import DEFAULT_MAX_TOKENS, AnthropicAdapter, translate_error
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

API_KEY = "sk-ant-test-5f0c1e2d3b4a"
BASE_URL = "http://anthropic.test"
MODEL = "claude-test"

WEATHER = ToolDefinition(
    name="get_weather",
    description="Weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)

Reply = Callable[[httpx2.Request], httpx2.Response]


def text(value: str) -> dict[str, Any]:
    return {"type": "text", "text": value}


def answer(
    *content: dict[str, Any],
    stop_reason: str | None = "end_turn",
    usage: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Messages API response body."""
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": list(content) or [text("ok")],
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 10, "output_tokens": 5},
    }


def error_body(error_type: str, message: str, error_code: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return {"type": "error", "error": error}


def ask(*messages: Message, **fields: Any) -> Request:
    return Request(model=MODEL, messages=messages, **fields)


def thinking_part(text: str, signature: str | None, provider: str = "anthropic") -> ContentPart:
    return ContentPart(
        ContentKind.THINKING,
        thinking=ThinkingData(text, signature=signature, provider=provider),
    )


class FakeMessagesAPI:
    """Stands in for the Anthropic API: answers each request with the next queued reply and
    keeps every request it was sent."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.requests: list[httpx2.Request] = []
        self.adapters: list[AnthropicAdapter] = []

    def reply(
        self, body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
    ) -> None:
        self.replies.append(lambda request: httpx2.Response(status, json=body, headers=headers))

    def fail(self, error: type[httpx2.TransportError], message: str) -> None:
        def raise_error(request: httpx2.Request) -> httpx2.Response:
            raise error(message, request=request)

        self.replies.append(raise_error)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        return self.replies.pop(0)(request)

    def http_client(self) -> httpx2.AsyncClient:
        return httpx2.AsyncClient(transport=httpx2.MockTransport(self.handle))

    def adapter(self) -> AnthropicAdapter:
        adapter = AnthropicAdapter(API_KEY, base_url=BASE_URL, http_client=self.http_client())
        self.adapters.append(adapter)
        return adapter

    def body(self, index: int = -1) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[index].content)
        return body

    async def close(self) -> None:
        for adapter in self.adapters:
            await adapter.close()


@pytest.fixture
async def api() -> AsyncIterator[FakeMessagesAPI]:
    fake = FakeMessagesAPI()
    yield fake
    await fake.close()


async def sent_body(api: FakeMessagesAPI, request: Request) -> dict[str, Any]:
    """The body the adapter sends for ``request``."""
    api.reply(answer())
    await api.adapter().complete(request)
    return api.body()


async def raised(api: FakeMessagesAPI) -> LLMError:
    """The error the adapter raises for the queued reply."""
    with pytest.raises(LLMError) as caught:
        await api.adapter().complete(ask(Message.user("hi")))
    return caught.value


class TestAdapter:
    def test_importing_the_module_or_building_an_adapter_leaves_the_sdk_unloaded(self) -> None:
        """Neither importing orchestra.llm.anthropic nor building an adapter imports anthropic."""
        code = (
            "import sys\n"
            "from orchestra.llm.anthropic import AnthropicAdapter\n"
            "AnthropicAdapter('key')\n"
            "print([m for m in sys.modules if m == 'anthropic' or m.startswith('anthropic.')])\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        assert result.stdout.strip() == "[]"

    def test_is_a_provider_adapter_named_anthropic(self) -> None:
        """The adapter satisfies the ProviderAdapter protocol under the name "anthropic"."""
        adapter = AnthropicAdapter(API_KEY)
        assert isinstance(adapter, ProviderAdapter)
        assert adapter.name == "anthropic"

    def test_an_empty_key_is_a_configuration_error(self) -> None:
        """An adapter without an API key is refused when it is built, not at the first call."""
        with pytest.raises(ConfigurationError, match="API key"):
            AnthropicAdapter("")

    async def test_posts_to_messages_with_a_bearer_key(self, api: FakeMessagesAPI) -> None:
        """The request goes to /v1/messages with the key as ``Authorization: Bearer``."""
        await sent_body(api, ask(Message.user("hi")))
        request = api.requests[0]
        assert str(request.url) == f"{BASE_URL}/v1/messages"
        assert request.headers["authorization"] == f"Bearer {API_KEY}"


class TestRequestBody:
    async def test_system_and_developer_messages_become_system(self, api: FakeMessagesAPI) -> None:
        """System and developer messages are joined into ``system``, out of the turns."""
        body = await sent_body(
            api,
            ask(
                Message.system("Be terse."),
                Message(Role.DEVELOPER, (ContentPart.of_text("Use SI units."),)),
                Message.user("Weather?"),
            ),
        )
        assert body["system"] == "Be terse.\n\nUse SI units."
        assert body["messages"] == [{"role": "user", "content": [text("Weather?")]}]

    async def test_consecutive_same_role_messages_merge(self, api: FakeMessagesAPI) -> None:
        """Consecutive messages of one role merge into one turn, so the turns alternate."""
        body = await sent_body(
            api,
            ask(
                Message.user("a"),
                Message.user("b"),
                Message.assistant("c"),
                Message.assistant("d"),
                Message.user("e"),
            ),
        )
        assert body["messages"] == [
            {"role": "user", "content": [text("a"), text("b")]},
            {"role": "assistant", "content": [text("c"), text("d")]},
            {"role": "user", "content": [text("e")]},
        ]

    async def test_tool_results_go_first_in_a_user_turn(self, api: FakeMessagesAPI) -> None:
        """Tool results become tool_result blocks of a user turn, ahead of the turn's text."""
        call = ToolCall("toolu_01", "get_weather", {"city": "Paris"})
        body = await sent_body(
            api,
            ask(
                Message.user("Weather in Paris?"),
                Message(Role.ASSISTANT, (ContentPart(ContentKind.TOOL_CALL, tool_call=call),)),
                Message.user("Quickly, please."),
                Message.tool_results([ToolResult("toolu_01", "no data", is_error=True)]),
            ),
        )
        assert body["messages"][1:] == [
            {
                "role": "assistant",
                "content": [
                    {
                        "type": "tool_use",
                        "id": "toolu_01",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    }
                ],
            },
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "content": "no data",
                        "is_error": True,
                    },
                    text("Quickly, please."),
                ],
            },
        ]

    async def test_tool_definitions(self, api: FakeMessagesAPI) -> None:
        """A tool is sent as name, description and its parameters as ``input_schema``."""
        body = await sent_body(api, ask(Message.user("hi"), tools=(WEATHER,)))
        assert body["tools"] == [
            {
                "name": "get_weather",
                "description": "Weather for a city",
                "input_schema": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            }
        ]

    @pytest.mark.parametrize(
        ("choice", "sent"),
        [
            (None, {"type": "auto"}),
            ("auto", {"type": "auto"}),
            ("none", {"type": "none"}),
            ("required", {"type": "any"}),
            ("get_weather", {"type": "tool", "name": "get_weather"}),
        ],
    )
    async def test_tool_choice_modes(
        self, api: FakeMessagesAPI, choice: str | None, sent: dict[str, str]
    ) -> None:
        """auto/none/required/a tool's name map to Anthropic's auto/none/any/tool choices."""
        body = await sent_body(api, ask(Message.user("hi"), tools=(WEATHER,), tool_choice=choice))
        assert body["tool_choice"] == sent

    async def test_no_tools_no_tool_choice(self, api: FakeMessagesAPI) -> None:
        """Without tools neither ``tools`` nor ``tool_choice`` is sent."""
        body = await sent_body(api, ask(Message.user("hi"), tool_choice="none"))
        assert "tools" not in body
        assert "tool_choice" not in body

    async def test_max_tokens_defaults_to_4096(self, api: FakeMessagesAPI) -> None:
        """The required ``max_tokens`` is 4096 when the request leaves it unset."""
        body = await sent_body(api, ask(Message.user("hi")))
        assert body["max_tokens"] == DEFAULT_MAX_TOKENS == 4096

    async def test_max_tokens_is_the_requests(self, api: FakeMessagesAPI) -> None:
        """A request's own ``max_tokens`` is sent as is."""
        body = await sent_body(api, ask(Message.user("hi"), max_tokens=300))
        assert body["max_tokens"] == 300

    async def test_stop_sequences(self, api: FakeMessagesAPI) -> None:
        """Stop sequences are sent as ``stop_sequences``."""
        body = await sent_body(api, ask(Message.user("hi"), stop_sequences=("END", "###")))
        assert body["stop_sequences"] == ["END", "###"]

    async def test_effort_maps_to_output_config_and_adaptive_thinking(
        self, api: FakeMessagesAPI
    ) -> None:
        """``reasoning_effort`` becomes ``output_config.effort`` with adaptive thinking."""
        body = await sent_body(api, ask(Message.user("hi"), reasoning_effort="high"))
        assert body["output_config"] == {"effort": "high"}
        assert body["thinking"] == {"type": "adaptive"}

    async def test_no_effort_no_thinking(self, api: FakeMessagesAPI) -> None:
        """Without ``reasoning_effort`` neither thinking nor an effort is asked for."""
        body = await sent_body(api, ask(Message.user("hi")))
        assert "output_config" not in body
        assert "thinking" not in body

    async def test_temperature_is_dropped_with_a_warning(self, api: FakeMessagesAPI) -> None:
        """``temperature`` is not sent (the SDK has no such parameter); the response warns."""
        api.reply(answer())
        response = await api.adapter().complete(ask(Message.user("hi"), temperature=0.2))
        assert "temperature" not in api.body()
        assert len(response.warnings) == 1
        assert "temperature=0.2" in response.warnings[0]

    async def test_beta_headers_are_one_comma_separated_header(self, api: FakeMessagesAPI) -> None:
        """``beta_headers`` are sent as one ``anthropic-beta`` header, not in the body."""
        betas = ["interleaved-thinking-2025-05-14", "files-api-2025-04-14"]
        body = await sent_body(
            api, ask(Message.user("hi"), provider_options={"anthropic": {"beta_headers": betas}})
        )
        assert api.requests[0].headers["anthropic-beta"] == ",".join(betas)
        assert "beta_headers" not in body

    async def test_no_beta_header_by_default(self, api: FakeMessagesAPI) -> None:
        """Without ``beta_headers`` no ``anthropic-beta`` header is sent."""
        await sent_body(api, ask(Message.user("hi")))
        assert "anthropic-beta" not in api.requests[0].headers

    async def test_caching_is_on_by_default(self, api: FakeMessagesAPI) -> None:
        """By default the top-level ``cache_control`` asks for ephemeral prompt caching."""
        body = await sent_body(api, ask(Message.user("hi")))
        assert body["cache_control"] == {"type": "ephemeral"}

    async def test_auto_cache_false_turns_caching_off(self, api: FakeMessagesAPI) -> None:
        """``auto_cache=False`` sends no ``cache_control`` (and not the option itself)."""
        body = await sent_body(
            api, ask(Message.user("hi"), provider_options={"anthropic": {"auto_cache": False}})
        )
        assert "cache_control" not in body
        assert "auto_cache" not in body

    async def test_provider_options_pass_through(self, api: FakeMessagesAPI) -> None:
        """Other Anthropic options reach the API (a thinking budget wins over adaptive);
        other providers' options are ignored."""
        budget = {"type": "enabled", "budget_tokens": 2048}
        body = await sent_body(
            api,
            ask(
                Message.user("hi"),
                reasoning_effort="high",
                provider_options={
                    "anthropic": {"thinking": budget, "metadata": {"user_id": "u-1"}},
                    "openai": {"store": False},
                },
            ),
        )
        assert body["thinking"] == budget
        assert body["metadata"] == {"user_id": "u-1"}
        assert "store" not in body

    async def test_an_unknown_option_is_a_configuration_error(self, api: FakeMessagesAPI) -> None:
        """An Anthropic option ``messages.create`` does not take is named, and nothing is sent."""
        with pytest.raises(ConfigurationError, match=r"provider_options\.anthropic\.temprature"):
            await api.adapter().complete(
                ask(Message.user("hi"), provider_options={"anthropic": {"temprature": 1}})
            )
        assert api.requests == []

    async def test_only_signed_anthropic_thinking_is_sent(self, api: FakeMessagesAPI) -> None:
        """Thinking from another provider, or without a signature, is dropped from history."""
        body = await sent_body(
            api,
            ask(
                Message.user("hi"),
                Message(
                    Role.ASSISTANT,
                    (
                        thinking_part("theirs", "sig-o", provider="openai"),
                        thinking_part("unsigned", None),
                        thinking_part("ours", "sig-a"),
                        ContentPart.of_text("hello"),
                    ),
                ),
                Message.user("and?"),
            ),
        )
        assert body["messages"][1]["content"] == [
            {"type": "thinking", "thinking": "ours", "signature": "sig-a"},
            text("hello"),
        ]


class TestToolRoundTrip:
    async def test_round_trip_through_client_echoes_thinking_verbatim(
        self, api: FakeMessagesAPI
    ) -> None:
        """Tool call, then result, then final text through Client; the second request echoes
        the first answer's thinking block with its signature unchanged."""
        thinking = {
            "type": "thinking",
            "thinking": "The user wants the weather; call the tool.",
            "signature": "EqQBCkYIARgCKkD+/sig==",
        }
        tool_use = {
            "type": "tool_use",
            "id": "toolu_01",
            "name": "get_weather",
            "input": {"city": "Paris"},
        }
        api.reply(answer(thinking, text("Let me check."), tool_use, stop_reason="tool_use"))
        api.reply(answer(text("It is 21C and sunny in Paris.")))
        client = Client({"anthropic": api.adapter()})

        history = (Message.system("Be terse."), Message.user("Weather in Paris?"))
        first = await client.complete(ask(*history, tools=(WEATHER,), reasoning_effort="high"))
        assert first.finish_reason.reason == "tool_calls"
        assert first.tool_calls == [ToolCall("toolu_01", "get_weather", {"city": "Paris"})]
        assert first.reasoning == thinking["thinking"]

        history += (
            first.message,
            Message.tool_results([ToolResult("toolu_01", "21C sunny")]),
        )
        final = await client.complete(ask(*history, tools=(WEATHER,), reasoning_effort="high"))

        assert final.text == "It is 21C and sunny in Paris."
        assert final.finish_reason.reason == "stop"
        assert api.body(1)["messages"] == [
            {"role": "user", "content": [text("Weather in Paris?")]},
            {"role": "assistant", "content": [thinking, text("Let me check."), tool_use]},
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01",
                        "content": "21C sunny",
                        "is_error": False,
                    }
                ],
            },
        ]

    async def test_redacted_thinking_is_echoed_as_its_data(self, api: FakeMessagesAPI) -> None:
        """A redacted thinking block is kept as opaque data and sent back unchanged."""
        redacted = {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix/LafPsn4a"}
        api.reply(answer(redacted, text("Done.")))
        adapter = api.adapter()
        first = await adapter.complete(ask(Message.user("hi")))
        part = first.message.content[0]
        assert part.kind is ContentKind.REDACTED_THINKING
        assert part.thinking == ThinkingData(
            "", signature=redacted["data"], redacted=True, provider="anthropic"
        )

        api.reply(answer())
        await adapter.complete(ask(Message.user("hi"), first.message, Message.user("more")))
        assert api.body()["messages"][1]["content"] == [redacted, text("Done.")]


class TestResponse:
    @pytest.mark.parametrize(
        ("stop_reason", "reason"),
        [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("model_context_window_exceeded", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "other"),
            ("a_future_reason", "other"),
        ],
    )
    async def test_stop_reasons(self, api: FakeMessagesAPI, stop_reason: str, reason: str) -> None:
        """Each stop_reason maps to its unified finish reason, keeping the raw value."""
        api.reply(answer(stop_reason=stop_reason))
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert response.finish_reason.reason == reason
        assert response.finish_reason.raw == stop_reason

    async def test_no_stop_reason_is_other(self, api: FakeMessagesAPI) -> None:
        """A response without a stop_reason finishes as "other" with an empty raw value."""
        api.reply(answer(stop_reason=None))
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert (response.finish_reason.reason, response.finish_reason.raw) == ("other", "")

    async def test_identity_and_blocks(self, api: FakeMessagesAPI) -> None:
        """id, model and provider are kept; text, thinking and tool_use become their parts."""
        api.reply(
            answer(
                {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                text("Checking."),
                {"type": "tool_use", "id": "toolu_9", "name": "get_weather", "input": {}},
                stop_reason="tool_use",
            )
        )
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert (response.id, response.model, response.provider) == ("msg_01", MODEL, "anthropic")
        assert response.message.role is Role.ASSISTANT
        assert [part.kind for part in response.message.content] == [
            ContentKind.THINKING,
            ContentKind.TEXT,
            ContentKind.TOOL_CALL,
        ]
        assert response.message.content[0].thinking == ThinkingData(
            "Hmm.", signature="sig", provider="anthropic"
        )
        assert response.text == "Checking."
        assert response.tool_calls == [ToolCall("toolu_9", "get_weather", {})]
        assert response.warnings == ()

    async def test_an_unknown_block_is_left_out_with_a_warning(self, api: FakeMessagesAPI) -> None:
        """A block the unified types cannot hold (a server tool use) is left out, with a warning."""
        server_tool = {
            "type": "server_tool_use",
            "id": "srvtoolu_1",
            "name": "web_search",
            "input": {"query": "Paris weather"},
        }
        api.reply(answer(server_tool, text("Sunny.")))
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert [part.kind for part in response.message.content] == [ContentKind.TEXT]
        assert len(response.warnings) == 1
        assert "server_tool_use" in response.warnings[0]

    async def test_usage_with_cache_counts(self, api: FakeMessagesAPI) -> None:
        """Input, output, cache read and cache write counts are Anthropic's own."""
        api.reply(
            answer(
                usage={
                    "input_tokens": 40,
                    "output_tokens": 12,
                    "cache_read_input_tokens": 1600,
                    "cache_creation_input_tokens": 200,
                }
            )
        )
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert response.usage == Usage(
            input_tokens=40, output_tokens=12, cache_read_tokens=1600, cache_write_tokens=200
        )

    async def test_usage_without_cache_counts(self, api: FakeMessagesAPI) -> None:
        """Cache counts the API leaves out stay None, as do reasoning tokens without thinking."""
        api.reply(answer(usage={"input_tokens": 3, "output_tokens": 4}))
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert response.usage == Usage(input_tokens=3, output_tokens=4)

    async def test_reasoning_tokens_are_estimated_from_thinking_text(
        self, api: FakeMessagesAPI
    ) -> None:
        """Without a reported count, reasoning tokens are the thinking text's length / 4,
        rounded up."""
        api.reply(answer({"type": "thinking", "thinking": "x" * 10, "signature": "s"}, text("a")))
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert response.usage.reasoning_tokens == 3

    async def test_reported_thinking_tokens_win_over_the_estimate(
        self, api: FakeMessagesAPI
    ) -> None:
        """``output_tokens_details.thinking_tokens``, when reported, is the reasoning count."""
        api.reply(
            answer(
                {"type": "thinking", "thinking": "x" * 10, "signature": "s"},
                usage={
                    "input_tokens": 3,
                    "output_tokens": 60,
                    "output_tokens_details": {"thinking_tokens": 42},
                },
            )
        )
        response = await api.adapter().complete(ask(Message.user("hi")))
        assert response.usage.reasoning_tokens == 42


#: status, the provider's error type and message, the unified error, whether it is retryable
ERROR_CASES = [
    (400, "invalid_request_error", "messages: Field required", InvalidRequestError, False),
    (401, "authentication_error", "invalid x-api-key", AuthenticationError, False),
    (402, "billing_error", "Your credit balance is too low", QuotaExceededError, False),
    (403, "permission_error", "This key may not use the model", AccessDeniedError, False),
    (404, "not_found_error", "model: claude-nope", NotFoundError, False),
    (408, "timeout_error", "Request timed out", RequestTimeoutError, False),
    (413, "request_too_large", "Request exceeds the maximum size", ContextLengthError, False),
    (400, "invalid_request_error", "prompt is too long: 210000 tokens", ContextLengthError, False),
    (429, "rate_limit_error", "Rate limit exceeded", RateLimitError, True),
    (500, "api_error", "Internal server error", ServerError, True),
    (529, "overloaded_error", "Overloaded", ServerError, True),
]
ERROR_IDS = [f"{status}-{kind.__name__}" for status, _, _, kind, _ in ERROR_CASES]


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "error_type", "message", "kind", "retryable"), ERROR_CASES, ids=ERROR_IDS
    )
    async def test_status_maps_to_error_class(
        self,
        api: FakeMessagesAPI,
        status: int,
        error_type: str,
        message: str,
        kind: type[LLMError],
        retryable: bool,
    ) -> None:
        """Each HTTP status becomes its unified error, with its retryable flag, the status,
        and the provider's error type and message."""
        api.reply(error_body(error_type, message), status=status, headers={"request-id": "req_7"})
        error = await raised(api)
        assert type(error) is kind
        assert error.retryable is retryable
        assert (error.provider, error.status_code, error.error_code) == (
            "anthropic",
            status,
            error_type,
        )
        assert message in str(error)
        assert "req_7" in str(error)
        assert error.__cause__ is None

    async def test_a_spent_limit_is_quota_not_rate_limit(self, api: FakeMessagesAPI) -> None:
        """A 429 whose error code is a spend limit is a QuotaExceededError: waiting won't help."""
        api.reply(
            error_body("rate_limit_error", "spend limit", "enforced_spend_limit_reached"),
            status=429,
        )
        error = await raised(api)
        assert type(error) is QuotaExceededError
        assert not error.retryable
        assert error.error_code == "enforced_spend_limit_reached"

    @pytest.mark.parametrize(
        ("headers", "seconds"),
        [
            ({"retry-after": "7"}, 7.0),
            ({"retry-after": "1.5"}, 1.5),
            ({"retry-after-ms": "2500", "retry-after": "3"}, 2.5),
            ({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),
            ({"retry-after": "soon"}, None),
            ({}, None),
        ],
    )
    async def test_retry_after(
        self, api: FakeMessagesAPI, headers: dict[str, str], seconds: float | None
    ) -> None:
        """retry-after-ms wins over retry-after (seconds, or an HTTP date: a past one is 0);
        an unreadable or missing header gives None."""
        api.reply(error_body("rate_limit_error", "slow down"), status=429, headers=headers)
        error = await raised(api)
        assert isinstance(error, RateLimitError)
        assert error.retry_after == seconds

    async def test_connection_failure_is_a_network_error(self, api: FakeMessagesAPI) -> None:
        """A connection that fails is a retryable NetworkError saying why."""
        api.fail(httpx2.ConnectError, "connection refused")
        error = await raised(api)
        assert type(error) is NetworkError
        assert error.retryable
        assert "connection refused" in str(error)

    async def test_timeout_is_a_request_timeout_error(self, api: FakeMessagesAPI) -> None:
        """A request that times out is a RequestTimeoutError, not retried by default."""
        api.fail(httpx2.ReadTimeout, "timed out")
        error = await raised(api)
        assert type(error) is RequestTimeoutError
        assert not error.retryable

    async def test_overloaded_mid_stream_is_a_server_error(self) -> None:
        """An ``overloaded_error`` event in a 200 stream (raised by the SDK as an APIStatusError
        with status 200) is a retryable ServerError."""
        events = [
            {"type": "message_start", "message": answer(stop_reason=None) | {"content": []}},
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        ]
        sse = "".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)

        def stream(request: httpx2.Request) -> httpx2.Response:
            return httpx2.Response(
                200, content=sse.encode(), headers={"content-type": "text/event-stream"}
            )

        http_client = httpx2.AsyncClient(transport=httpx2.MockTransport(stream))
        sdk = anthropic.AsyncAnthropic(
            api_key=API_KEY, base_url=BASE_URL, max_retries=0, http_client=http_client
        )

        async def read_stream() -> None:
            async with sdk.messages.stream(
                model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}]
            ) as events_seen:
                async for _ in events_seen:
                    pass

        with pytest.raises(anthropic.APIStatusError) as caught:
            await read_stream()
        await sdk.close()
        assert caught.value.status_code == 200

        error = translate_error(caught.value, api_key=API_KEY)
        assert type(error) is ServerError
        assert error.retryable
        assert error.error_code == "overloaded_error"

    @pytest.mark.parametrize(
        ("status", "error_type", "message", "kind", "retryable"), ERROR_CASES, ids=ERROR_IDS
    )
    async def test_the_key_never_appears_in_a_provider_error(
        self,
        api: FakeMessagesAPI,
        status: int,
        error_type: str,
        message: str,
        kind: type[LLMError],
        retryable: bool,
    ) -> None:
        """A provider that echoes the API key in its error message does not leak it."""
        api.reply(error_body(error_type, f"{message} (key {API_KEY})"), status=status)
        error = await raised(api)
        assert API_KEY not in str(error)
        assert API_KEY not in repr(error)
        assert "[redacted]" in error.message

    @pytest.mark.parametrize("failure", [httpx2.ConnectError, httpx2.ReadTimeout])
    async def test_the_key_never_appears_in_a_transport_error(
        self, api: FakeMessagesAPI, failure: type[httpx2.TransportError]
    ) -> None:
        """Network and timeout errors do not carry the key, whatever the transport said."""
        api.fail(failure, f"failed with {API_KEY}")
        error = await raised(api)
        assert API_KEY not in str(error)
        assert error.__cause__ is None


class TestRetriesThroughClient:
    async def test_a_429_is_retried_after_retry_after(self, api: FakeMessagesAPI) -> None:
        """Client retries a 429 once, waiting the retry-after seconds, and returns the answer;
        the SDK itself does not retry."""
        api.reply(
            error_body("rate_limit_error", "slow down"), status=429, headers={"retry-after": "3"}
        )
        api.reply(answer(text("done")))
        sleep = RecordingSleep()
        client = Client({"anthropic": api.adapter()}, sleep=sleep)
        response = await client.complete(ask(Message.user("hi")))
        assert response.text == "done"
        assert sleep.delays == [3.0]
        assert len(api.requests) == 2

    async def test_a_401_is_not_retried(self, api: FakeMessagesAPI) -> None:
        """An authentication error reaches the caller after one request."""
        api.reply(error_body("authentication_error", "invalid x-api-key"), status=401)
        sleep = RecordingSleep()
        client = Client({"anthropic": api.adapter()}, sleep=sleep, retry=RetryPolicy(max_retries=5))
        with pytest.raises(AuthenticationError):
            await client.complete(ask(Message.user("hi")))
        assert sleep.delays == []
        assert len(api.requests) == 1
