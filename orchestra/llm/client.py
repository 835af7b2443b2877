"""The unified client: routes a request to its provider's adapter, and retries what can be
retried (``llm-sdks.md`` §2.1, §2.6). Adapters never retry, and their SDK clients are built
with ``max_retries=0``: retries happen here, once, with backoff and ``retry-after``.

A stream is retried only while nothing of it has reached the caller: once an event was
delivered, a failure propagates (a retry would repeat what the caller already saw).
"""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Protocol, runtime_checkable

import anyio
import attrs

from orchestra.llm.errors import ConfigurationError, LLMError
from orchestra.llm.types import Request, Response, StreamEvent

__all__ = ["Client", "ProviderAdapter", "RetryPolicy", "StreamingAdapter"]


@runtime_checkable
class ProviderAdapter(Protocol):
    """One provider's native API behind the unified types. Never retries."""

    @property
    def name(self) -> str: ...

    async def complete(self, request: Request) -> Response: ...

    async def close(self) -> None: ...


@runtime_checkable
class StreamingAdapter(ProviderAdapter, Protocol):
    """An adapter that can also stream. Streaming is optional: :meth:`Client.stream` refuses
    a provider whose adapter lacks it."""

    def stream(self, request: Request) -> AsyncIterator[StreamEvent]:
        """The events of one model call, ending with FINISH; raises an
        :class:`~orchestra.llm.errors.LLMError`. Never retries."""
        ...


@attrs.frozen
class RetryPolicy:
    """Retries of one model call: delay ``min(base * multiplier**n, max_delay)``, times a
    jitter of 0.5-1.5. A ``retry-after`` up to ``max_delay`` replaces the delay; a longer one
    is not waited for (the error is raised with it set). ``max_retries=0``: no retries."""

    max_retries: int = 2
    base_delay: float = 1.0
    max_delay: float = 60.0
    multiplier: float = 2.0
    jitter: bool = True

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based), or None: do not retry."""
        if retry_after is not None:
            return retry_after if retry_after <= self.max_delay else None
        delay = min(self.base_delay * self.multiplier**attempt, self.max_delay)
        return delay * random.uniform(0.5, 1.5) if self.jitter else delay


OnRetry = Callable[[LLMError, int, float], None]


class Client:
    """``Client({"anthropic": adapter, ...}, default_provider="anthropic")``. A request goes
    to ``request.provider``, else the default; with neither, a ConfigurationError (the client
    never guesses)."""

    def __init__(
        self,
        providers: Mapping[str, ProviderAdapter],
        *,
        default_provider: str | None = None,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
        on_retry: OnRetry | None = None,
    ) -> None:
        self.providers = dict(providers)
        self.default_provider = default_provider or next(iter(self.providers), None)
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.on_retry = on_retry

    def adapter_for(self, request: Request) -> ProviderAdapter:
        name = request.provider or self.default_provider
        if name is None:
            raise ConfigurationError(
                "no LLM provider is configured: set ANTHROPIC_API_KEY or OPENAI_API_KEY, or "
                "name providers in orchestra.yaml"
            )
        adapter = self.providers.get(name)
        if adapter is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise ConfigurationError(
                f"provider {name!r} is not configured (configured: {known}); set its API key"
            )
        return adapter

    async def complete(self, request: Request) -> Response:
        """One model call, retried per the policy when the error is retryable."""
        adapter = self.adapter_for(request)
        attempt = 0
        while True:
            try:
                return await adapter.complete(request)
            except LLMError as err:
                delay = self._retry_delay(err, attempt)
                if delay is None:
                    raise
                await self._wait(err, attempt, delay)
                attempt += 1

    def stream(self, request: Request) -> AsyncGenerator[StreamEvent, None]:
        """The events of one model call, ending with FINISH, whose response is what
        :meth:`complete` would have returned. A retryable error before the first event is
        retried per the policy; after it, the error propagates. Close the generator (e.g.
        with ``contextlib.aclosing``) when leaving it early: that closes the connection.

        A provider whose adapter cannot stream is a ConfigurationError, raised here."""
        adapter = self.adapter_for(request)
        if not isinstance(adapter, StreamingAdapter):
            raise ConfigurationError(
                f"provider {adapter.name!r} cannot stream: its adapter has no stream(); "
                "use complete()"
            )
        return self._stream(adapter, request)

    async def _stream(
        self, adapter: StreamingAdapter, request: Request
    ) -> AsyncGenerator[StreamEvent, None]:
        attempt = 0
        while True:
            delivered = False
            events = adapter.stream(request)
            try:
                async for event in events:
                    delivered = True
                    yield event
                return
            except LLMError as err:
                delay = None if delivered else self._retry_delay(err, attempt)
                if delay is None:
                    raise
                failure = err
            finally:
                if isinstance(events, AsyncGenerator):
                    await events.aclose()
            await self._wait(failure, attempt, delay)
            attempt += 1

    def _retry_delay(self, err: LLMError, attempt: int) -> float | None:
        """Seconds to wait before retry ``attempt`` (0-based) after ``err``, or None: give
        up and raise it."""
        if not err.retryable or attempt >= self.retry.max_retries:
            return None
        return self.retry.delay(attempt, err.retry_after)

    async def _wait(self, err: LLMError, attempt: int, delay: float) -> None:
        if self.on_retry is not None:
            self.on_retry(err, attempt + 1, delay)
        await self.sleep(delay)

    async def close(self) -> None:
        for adapter in self.providers.values():
            await adapter.close()
