"""Errors of the LLM layer: one taxonomy for every provider (``llm-sdks.md`` §2.6).

Each error says whether retrying can help (``retryable``) and, when the provider said so,
how long to wait (``retry_after``, seconds). Adapters map their SDK's exceptions onto these;
nothing above the adapters sees an SDK exception.

    LLMError (OrchestraError)
    ├── ProviderError                   the provider answered with an error
    │   ├── AuthenticationError         401: a missing or wrong key (not retried)
    │   ├── AccessDeniedError           403 (not retried)
    │   ├── NotFoundError               404: e.g. an unknown model (not retried)
    │   ├── InvalidRequestError         400/422 (not retried)
    │   ├── ContextLengthError          the prompt is too long (not retried)
    │   ├── ContentFilterError          refused by a safety filter (not retried)
    │   ├── QuotaExceededError          billing quota (not retried)
    │   ├── RateLimitError              429 (retried, honouring retry-after)
    │   └── ServerError                 5xx and "overloaded" (retried)
    ├── RequestTimeoutError             the request took too long (not retried by default)
    ├── NetworkError                    the connection failed (retried)
    ├── StreamError                     a stream broke off mid-way (retried)
    └── ConfigurationError              no provider for a request, a missing key (not retried)
"""

from __future__ import annotations

import email.utils
import math
import time
from collections.abc import Mapping

from orchestra.errors import OrchestraError

__all__ = [
    "AccessDeniedError",
    "AuthenticationError",
    "ConfigurationError",
    "ContentFilterError",
    "ContextLengthError",
    "InvalidRequestError",
    "LLMError",
    "NetworkError",
    "NotFoundError",
    "ProviderError",
    "QuotaExceededError",
    "RateLimitError",
    "RequestTimeoutError",
    "ServerError",
    "StreamError",
    "error_for_status",
    "retry_after_seconds",
]


class LLMError(OrchestraError):
    """Base of the LLM layer's errors. ``retryable`` says whether the same request may
    succeed if sent again."""

    retryable: bool = True

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        status_code: int | None = None,
        error_code: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.status_code = status_code
        self.error_code = error_code
        self.retry_after = retry_after


class ProviderError(LLMError):
    """The provider answered with an error. Unknown kinds are retryable."""


class AuthenticationError(ProviderError):
    retryable = False


class AccessDeniedError(ProviderError):
    retryable = False


class NotFoundError(ProviderError):
    retryable = False


class InvalidRequestError(ProviderError):
    retryable = False


class ContextLengthError(ProviderError):
    retryable = False


class ContentFilterError(ProviderError):
    retryable = False


class QuotaExceededError(ProviderError):
    retryable = False


class RateLimitError(ProviderError):
    retryable = True


class ServerError(ProviderError):
    retryable = True


class RequestTimeoutError(LLMError):
    retryable = False


class NetworkError(LLMError):
    retryable = True


class StreamError(LLMError):
    retryable = True


class ConfigurationError(LLMError):
    retryable = False


_BY_STATUS: dict[int, type[ProviderError]] = {
    400: InvalidRequestError,
    401: AuthenticationError,
    402: QuotaExceededError,
    403: AccessDeniedError,
    404: NotFoundError,
    413: ContextLengthError,
    422: InvalidRequestError,
    429: RateLimitError,
}

#: message fragments that say more than the status does (lower case)
_BY_MESSAGE: tuple[tuple[tuple[str, ...], type[ProviderError]], ...] = (
    (
        (
            "context length",
            "context_length",
            "too many tokens",
            "prompt is too long",
            "context window",
        ),
        ContextLengthError,
    ),
    (("content filter", "content_filter", "safety"), ContentFilterError),
    (("insufficient_quota", "quota"), QuotaExceededError),
    (("not found", "not_found", "does not exist"), NotFoundError),
    (("unauthorized", "invalid key", "invalid api key", "invalid x-api-key"), AuthenticationError),
    (("overloaded",), ServerError),
)


def error_for_status(
    status_code: int | None,
    message: str,
    *,
    provider: str,
    error_code: str = "",
    retry_after: float | None = None,
) -> LLMError:
    """The error class a provider's status, error code and message mean (``llm-sdks.md``
    §2.6): 408 a RequestTimeoutError, 5xx a ServerError, other statuses their class, refined
    by the code or message where they say more (a 400 saying "prompt is too long" is a
    ContextLengthError, a 429 "insufficient_quota" a QuotaExceededError); anything else a
    retryable ProviderError."""
    if status_code == 408:
        return RequestTimeoutError(
            message, provider=provider, status_code=408, error_code=error_code
        )
    if status_code is not None and status_code >= 500:
        return ServerError(
            message,
            provider=provider,
            status_code=status_code,
            error_code=error_code,
            retry_after=retry_after,
        )
    lowered = f"{error_code} {message}".lower()
    kind: type[ProviderError] | None = None
    for fragments, candidate in _BY_MESSAGE:
        if any(fragment in lowered for fragment in fragments):
            kind = candidate
            break
    if status_code is not None and status_code in _BY_STATUS:
        by_status = _BY_STATUS[status_code]
        # The message refines a generic 400/404/422, and a 429 that is a spent quota (no
        # use waiting); otherwise the status says what it is.
        refines = by_status in (InvalidRequestError, NotFoundError) or (
            by_status is RateLimitError and kind is QuotaExceededError
        )
        if kind is None or not refines:
            kind = by_status
    return (kind or ProviderError)(
        message,
        provider=provider,
        status_code=status_code,
        error_code=error_code,
        retry_after=retry_after,
    )


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """Seconds a provider asked to wait, from ``retry-after-ms`` or ``retry-after`` (seconds
    or an HTTP date); None when neither says. Shared by every adapter."""
    milliseconds = _seconds(headers.get("retry-after-ms"))
    if milliseconds is not None:
        return milliseconds / 1000
    value = headers.get("retry-after")
    seconds = _seconds(value)
    if seconds is not None or not value:
        return seconds
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _seconds(value: str | None) -> float | None:
    try:
        number = float(value) if value else None
    except ValueError:
        return None
    return max(0.0, number) if number is not None and math.isfinite(number) else None
