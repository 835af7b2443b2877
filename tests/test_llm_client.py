"""The unified LLM layer without a provider: types, the error taxonomy, routing and retries."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Sequence

import pytest

from orchestra.llm.client import Client, RetryPolicy
from orchestra.llm.errors import (
    AuthenticationError,
    ConfigurationError,
    ContextLengthError,
    InvalidRequestError,
    LLMError,
    NetworkError,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    RateLimitError,
    RequestTimeoutError,
    ServerError,
    error_for_status,
    retry_after_seconds,
)
from orchestra.llm.types import (
    Message,
    Request,
    Response,
    ToolDefinition,
    ToolResult,
    Usage,
)
from orchestra.testing import RecordingSleep, ScriptedModel, Step, model_says


def Scripted(name: str, script: Sequence[Response | LLMError]) -> ScriptedModel:
    return ScriptedModel(script, name=name)


def model(name: str, *script: Step) -> ScriptedModel:
    return ScriptedModel(script, name=name)


def answer(text: str = "done", provider: str = "a") -> Response:
    return model_says(text, provider=provider)


def request(provider: str | None = None) -> Request:
    return Request(model="m", messages=(Message.user("hi"),), provider=provider)


class TestTypes:
    def test_message_accessors(self) -> None:
        """text joins the text parts; tool results are TOOL messages in order."""
        results = Message.tool_results([ToolResult("c1", "one"), ToolResult("c2", "two", True)])
        assert [p.tool_result.tool_call_id for p in results.content if p.tool_result] == [
            "c1",
            "c2",
        ]
        assert Message.user("hello").text == "hello"

    def test_usage_adds_and_keeps_unknown_counts_unknown(self) -> None:
        """Usage sums; an optional count stays None only when both sides lack it."""
        total = Usage(10, 5, None, 3) + Usage(1, 2, None, None)
        assert (total.input_tokens, total.output_tokens, total.total_tokens) == (11, 7, 18)
        assert (total.reasoning_tokens, total.cache_read_tokens) == (None, 3)

    @pytest.mark.parametrize("name", ["1tool", "has space", "x" * 65, "", "-x", "a.b"])
    def test_tool_names_are_checked_when_defined(self, name: str) -> None:
        """A tool name must start with a letter, use letters, digits, _ or -, and fit 64."""
        with pytest.raises(ValueError, match="tool name"):
            ToolDefinition(name, "does things")

    def test_a_hyphen_is_allowed_after_the_first_letter(self) -> None:
        """Repository tools are named like app__run-tests, which every provider accepts."""
        assert ToolDefinition("app__run-tests", "runs the tests").name == "app__run-tests"

    def test_tool_parameters_must_describe_an_object(self) -> None:
        """A schema whose root is not an object is refused with the tool's name."""
        with pytest.raises(ValueError, match=r"'grep'.*object"):
            ToolDefinition("grep", "search", {"type": "string"})


class TestErrors:
    @pytest.mark.parametrize(
        ("status", "message", "kind", "retryable"),
        [
            (400, "bad field", InvalidRequestError, False),
            (400, "prompt is too long: 250000 tokens", ContextLengthError, False),
            (401, "invalid x-api-key", AuthenticationError, False),
            (404, "model not found", NotFoundError, False),
            (429, "slow down", RateLimitError, True),
            (
                429,
                "You exceeded your current quota (insufficient_quota)",
                QuotaExceededError,
                False,
            ),
            (500, "boom", ServerError, True),
            (529, "Overloaded", ServerError, True),
            (200, "overloaded_error", ServerError, True),
            (418, "teapot", ProviderError, True),
            (400, "context_length_exceeded", ContextLengthError, False),
            (402, "payment required", QuotaExceededError, False),
            (408, "request timeout", RequestTimeoutError, False),
            (500, "the model does not exist", ServerError, True),
        ],
    )
    def test_status_and_message_give_the_class(
        self, status: int, message: str, kind: type[LLMError], retryable: bool
    ) -> None:
        """The status picks the class, refined by the message where it says more."""
        error = error_for_status(status, message, provider="p")
        assert type(error) is kind
        assert error.retryable is retryable
        assert error.status_code == status


class TestClient:
    async def test_routes_by_provider_then_default(self) -> None:
        """A request names its provider; without one it goes to the default."""
        a, b = (
            model("a", answer(provider="a")),
            model("b", answer(provider="b")),
        )
        client = Client({"a": a, "b": b}, default_provider="a")
        assert (await client.complete(request("b"))).provider == "b"
        assert (await client.complete(request())).provider == "a"

    async def test_no_provider_is_a_configuration_error(self) -> None:
        """No providers at all, or an unknown one: a ConfigurationError saying what to set."""
        with pytest.raises(ConfigurationError, match="no LLM provider"):
            await Client({}).complete(request())
        with pytest.raises(ConfigurationError, match=r"'c' is not configured.*a"):
            await Client({"a": model("a")}).complete(request("c"))

    async def test_retryable_errors_are_retried_with_backoff(self) -> None:
        """A server error then a network error, then an answer: two retries, delays growing
        by the multiplier."""
        adapter = ScriptedModel(
            name="a", script=[ServerError("500"), NetworkError("reset"), answer()]
        )
        sleep = RecordingSleep()
        policy = RetryPolicy(max_retries=2, base_delay=1.0, jitter=False)
        response = await Client({"a": adapter}, retry=policy, sleep=sleep).complete(request())
        assert response.text == "done"
        assert sleep.delays == [1.0, 2.0]

    async def test_retry_after_replaces_the_delay(self) -> None:
        """A 429 with retry-after waits exactly that long."""
        adapter = model("a", RateLimitError("429", retry_after=7.0), answer())
        sleep = RecordingSleep()
        await Client({"a": adapter}, sleep=sleep).complete(request())
        assert sleep.delays == [7.0]

    async def test_retry_after_beyond_the_maximum_is_not_waited_for(self) -> None:
        """A retry-after longer than max_delay raises at once, with retry_after set."""
        adapter = ScriptedModel(
            name="a", script=[RateLimitError("429", retry_after=600.0), answer()]
        )
        sleep = RecordingSleep()
        with pytest.raises(RateLimitError) as caught:
            await Client({"a": adapter}, sleep=sleep).complete(request())
        assert caught.value.retry_after == 600.0
        assert sleep.delays == []

    async def test_errors_that_cannot_be_fixed_by_retrying_are_raised_at_once(self) -> None:
        """An authentication error is not retried."""
        adapter = model("a", AuthenticationError("401"), answer())
        with pytest.raises(AuthenticationError):
            await Client({"a": adapter}, sleep=RecordingSleep()).complete(request())
        assert len(adapter.requests) == 1

    async def test_max_retries_zero_disables_retries(self) -> None:
        """With max_retries=0 a retryable error is raised on the first failure."""
        adapter = model("a", ServerError("500"), answer())
        client = Client({"a": adapter}, retry=RetryPolicy(max_retries=0), sleep=RecordingSleep())
        with pytest.raises(ServerError):
            await client.complete(request())

    async def test_retries_stop_after_max_retries(self) -> None:
        """Three server errors with max_retries=2: the third is raised."""
        adapter = ScriptedModel(
            name="a", script=[ServerError("1"), ServerError("2"), ServerError("3")]
        )
        sleep = RecordingSleep()
        with pytest.raises(ServerError, match="3"):
            await Client({"a": adapter}, sleep=sleep).complete(request())
        assert len(sleep.delays) == 2

    def test_jitter_stays_within_half_to_one_and_a_half(self) -> None:
        """Jittered delays for attempt 2 lie in [2, 6] for base 1 and multiplier 2."""
        policy = RetryPolicy()
        delays = [policy.delay(2, None) for _ in range(200)]
        assert all(d is not None and 2.0 <= d <= 6.0 for d in delays)


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("headers", "seconds"),
        [
            ({"retry-after": "7"}, 7.0),
            ({"retry-after-ms": "250", "retry-after": "1"}, 0.25),
            ({"retry-after": "-3"}, 0.0),
            ({"retry-after": "soon"}, None),
            ({}, None),
        ],
    )
    def test_headers_give_the_wait_in_seconds(
        self, headers: dict[str, str], seconds: float | None
    ) -> None:
        """retry-after-ms wins over retry-after; negative waits are none; junk is no hint."""
        assert retry_after_seconds(headers) == seconds

    def test_an_http_date_is_the_time_until_then(self) -> None:
        """retry-after as an HTTP date gives the seconds from now until that moment."""
        when = email.utils.formatdate(time.time() + 120, usegmt=True)
        wait = retry_after_seconds({"retry-after": when})
        assert wait is not None
        assert 110 <= wait <= 121
