"""HTTP for providers: one pooled client per event loop, retries, status-to-error mapping.

Retries happen only while nothing has reached the caller, so a retried request can never repeat
streamed text: once the first event is out, any failure ends the stream with an `Error`.
"""

from __future__ import annotations

import asyncio
import json
import random
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any

import httpx

from common import metrics

from .base import Event, ProviderError
from .sse import SSEDecoder, SSEError, SSEvent

MAX_ERROR_BODY = 64 * 1024


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter, as the official SDKs do it.

    Attempt n (0-based) waits `min(initial_delay * 2**n, max_delay)` times a random factor in
    (0.75, 1]. A server's `retry-after-ms` / `retry-after` (seconds or an HTTP date) replaces that
    wait; one longer than `max_retry_after` is not waited for: the stream ends with the error at
    once, saying how long the server asked for.
    """

    max_retries: int = 2
    initial_delay: float = 0.5
    max_delay: float = 8.0
    max_retry_after: float = 60.0
    sleep: Callable[[float], Awaitable[Any]] = field(default=asyncio.sleep, compare=False)

    def backoff(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        return min(self.initial_delay * 2**attempt, self.max_delay) * (1 - 0.25 * rand())

    @classmethod
    def from_settings(cls) -> RetryPolicy:
        from django.conf import settings

        return cls(
            max_retries=settings.LLM_MAX_RETRIES,
            initial_delay=settings.LLM_RETRY_INITIAL_DELAY,
            max_delay=settings.LLM_RETRY_MAX_DELAY,
            max_retry_after=settings.LLM_RETRY_AFTER_MAX,
        )


def parse_retry_after(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """Seconds the server asks us to wait, from `retry-after-ms` or `retry-after`, or None."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max((when - (now or datetime.now(timezone.utc))).total_seconds(), 0.0)


async def with_retries(
    attempt: Callable[[], AsyncIterator[Event]], policy: RetryPolicy
) -> AsyncIterator[Event]:
    """Run `attempt()` until it succeeds, retrying transient failures before its first event."""
    for n in range(policy.max_retries + 1):
        yielded = False
        try:
            async with aclosing(attempt()) as events:
                async for event in events:
                    yielded = True
                    yield event
            return
        except ProviderError as exc:
            error = exc
        if yielded or not error.retryable or n == policy.max_retries:
            break
        if error.retry_after is not None and error.retry_after > policy.max_retry_after:
            error = ProviderError(
                error.kind,
                f"{error.message} (the server asks to retry after {error.retry_after:.0f} s, "
                f"more than the {policy.max_retry_after:.0f} s we wait)",
                retryable=True,
                status=error.status,
            )
            break
        delay = error.retry_after if error.retry_after is not None else policy.backoff(n)
        await policy.sleep(delay)
    if n > 0 and n == policy.max_retries and error.retryable and not yielded:
        error = ProviderError(
            error.kind, f"{error.message} (gave up after {n + 1} attempts)", retryable=True, status=error.status
        )
    yield error.event()


# --- The shared client ---------------------------------------------------------------------

# httpx clients belong to the event loop that opened their connections, so there is one per loop
# (one in production; one per test in the test suite).
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, httpx.AsyncClient] = weakref.WeakKeyDictionary()


def shared_client() -> httpx.AsyncClient:
    loop = asyncio.get_running_loop()
    client = _clients.get(loop)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=30.0),
            follow_redirects=False,
        )
        _clients[loop] = client
    return client


async def aclose_shared_client() -> None:
    """Close the current loop's client (at shutdown, or at the end of a test)."""
    client = _clients.pop(asyncio.get_running_loop(), None)
    if client is not None:
        await client.aclose()


# --- Errors --------------------------------------------------------------------------------

_ANTHROPIC_ERROR_KINDS = {
    "invalid_request_error": ("bad_request", False),
    "authentication_error": ("auth", False),
    "permission_error": ("auth", False),
    "billing_error": ("auth", False),
    "not_found_error": ("not_found", False),
    "request_too_large": ("bad_request", False),
    "rate_limit_error": ("rate_limited", True),
    "api_error": ("server_error", True),
    "overloaded_error": ("overloaded", True),
    "timeout_error": ("timeout", True),
}


def error_from_body(body: Any, fallback: str) -> tuple[str, str]:
    """(error type, message) from Anthropic's or OpenAI's error JSON."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        return str(error.get("type") or error.get("code") or ""), str(error.get("message") or fallback)
    if isinstance(error, str):
        return "", error
    return "", fallback


def error_from_event(body: Any) -> ProviderError:
    """An error reported inside a stream (Anthropic's `error` event, OpenAI's `{"error": ...}` chunk)."""
    error_type, message = error_from_body(body, "the provider reported an error mid-stream")
    kind, retryable = _ANTHROPIC_ERROR_KINDS.get(error_type, ("server_error", False))
    return ProviderError(kind, f"{error_type or 'error'}: {message}", retryable=retryable)


def error_from_status(status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    error_type, message = error_from_body(body, raw[:300].decode("utf-8", "replace").strip() or "no body")
    if status in (401, 403):
        kind, retryable = "auth", False
    elif status == 404:
        kind, retryable = "not_found", False
    elif status == 408:
        kind, retryable = "timeout", True
    elif status == 429:
        kind, retryable = "rate_limited", True
    elif status == 529 or error_type == "overloaded_error":
        kind, retryable = "overloaded", True
    elif status >= 500:
        kind, retryable = "server_error", True
    else:
        kind, retryable = "bad_request", False
    # Both SDKs obey this header, which lets a server overrule the status-based decision.
    should_retry = headers.get("x-should-retry")
    if should_retry in ("true", "false"):
        retryable = should_retry == "true"
    return ProviderError(
        kind,
        f"HTTP {status}: {message}",
        retryable=retryable,
        status=status,
        retry_after=parse_retry_after(headers),
    )


# --- Streaming a POST ----------------------------------------------------------------------


async def post_sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    body: dict[str, Any],
    timeout: float,
    provider: str,
) -> AsyncIterator[SSEvent]:
    """POST `body` and yield the server-sent events of the answer; failures raise ProviderError.

    The caller decides whether a stream that ends here was complete (it knows its protocol's
    terminal event); this only reports the end of the bytes. Each request is counted in
    `exoclaw_llm_requests_total` under `provider`, with the answer's HTTP status, or the error's kind
    when none came.
    """
    answered = False
    try:
        async with aclosing(_post_sse(client, url, headers=headers, body=body, timeout=timeout)) as events:
            async for event in events:
                if isinstance(event, int):
                    answered = True
                    metrics.LLM_REQUESTS.labels(provider=provider, status=str(event)).inc()
                    continue
                yield event
    except ProviderError as exc:
        if not answered:
            metrics.LLM_REQUESTS.labels(provider=provider, status=exc.kind).inc()
        raise


async def _post_sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    headers: Mapping[str, str],
    body: dict[str, Any],
    timeout: float,
) -> AsyncIterator[SSEvent | int]:
    """post_sse's work: the answer's status code first, then its events."""
    try:
        async with client.stream("POST", url, json=body, headers=headers, timeout=httpx.Timeout(timeout)) as response:
            yield response.status_code
            if response.status_code >= 300:
                raw = b""
                async for chunk in response.aiter_bytes():
                    raw += chunk
                    if len(raw) >= MAX_ERROR_BODY:
                        break
                raise error_from_status(response.status_code, response.headers, raw)
            content_type = response.headers.get("content-type", "")
            if "json" in content_type or "html" in content_type:
                raw = (await response.aread())[:300].decode("utf-8", "replace").strip()
                raise ProviderError(
                    "bad_response", f"expected an event stream, got {content_type or 'no content type'}: {raw}"
                )
            decoder = SSEDecoder()
            async for chunk in response.aiter_bytes():
                for event in decoder.feed(chunk):
                    yield event
            for event in decoder.close():
                yield event
    except SSEError as exc:
        raise ProviderError("bad_response", f"malformed event stream: {exc}") from None
    except httpx.TimeoutException as exc:
        phase = "connecting" if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout) else "waiting for data"
        raise ProviderError(
            "timeout", f"no answer from {url} after {timeout:g} s ({phase})", retryable=True
        ) from None
    except httpx.ConnectError as exc:
        raise ProviderError("connection", f"cannot connect to {url}: {exc}", retryable=True) from None
    except (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
        raise ProviderError(
            "connection", f"the stream from {url} was interrupted: {exc or type(exc).__name__}", retryable=True
        ) from None
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
        raise ProviderError("config", f"bad base URL {url!r}: {exc}") from None
    except httpx.DecodingError as exc:
        raise ProviderError("bad_response", f"undecodable answer from {url}: {exc}") from None
    except httpx.TransportError as exc:
        raise ProviderError("connection", f"request to {url} failed: {exc or type(exc).__name__}", retryable=True) from None


def interrupted(url: str) -> ProviderError:
    return ProviderError(
        "connection", f"the stream from {url} was interrupted before the end of the message", retryable=True
    )


def bad_json(event: SSEvent) -> ProviderError:
    return ProviderError("bad_response", f"malformed JSON in {event.event!r} event: {event.data[:200]!r}")


def loads(event: SSEvent) -> Any:
    try:
        return json.loads(event.data)
    except ValueError:
        raise bad_json(event) from None
