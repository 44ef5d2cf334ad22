"""Sending a reply to the platform: the retry policy (pure) and the httpx loop around it.

Retried: connection errors, 5xx and 429. A 429 waits as long as the platform says — Telegram puts
it in the body (`parameters.retry_after`), others in a `Retry-After` header — and anything else
backs off exponentially with jitter. Other 4xx answers are final: sending the same request again
would fail the same way.
"""

import asyncio
import json
import random
import time
from dataclasses import dataclass

import httpx

from .messages import AdapterOutputError, Outgoing, request_url
from .signatures import sign_reply


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    # A platform asking for a longer pause than this is treated as a failure rather than held for.
    max_retry_after: float = 120.0
    timeout: float = 10.0


class DeliveryError(Exception):
    """The reply could not be delivered; the message says why, without the token."""

    def __init__(self, message: str, attempts: int):
        super().__init__(message)
        self.attempts = attempts


def retry_after(body, headers) -> float | None:
    """Seconds the platform asked us to wait, from Telegram's `parameters.retry_after` or `Retry-After`."""
    params = body.get("parameters") if isinstance(body, dict) else None
    value = params.get("retry_after") if isinstance(params, dict) else None
    if value is None:
        value = headers.get("retry-after")
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if seconds >= 0 else None


def backoff(policy: RetryPolicy, attempt: int, rng=random.random) -> float:
    """Full exponential backoff with jitter: between half and all of base * 2^(attempt-1), capped."""
    delay = min(policy.max_delay, policy.base_delay * 2 ** (attempt - 1))
    return delay * (0.5 + rng() / 2)


def next_delay(policy: RetryPolicy, attempt: int, status: int | None, body=None, headers=None, rng=random.random):
    """Seconds to wait before attempt `attempt + 1`, or None to give up. `status` None means no answer."""
    if attempt >= policy.attempts:
        return None
    if status is not None and status != 429 and status < 500:
        return None
    asked = retry_after(body, headers or {}) if status is not None else None
    if asked is not None:
        return asked if asked <= policy.max_retry_after else None
    return backoff(policy, attempt, rng)


def is_success(status: int, body) -> bool:
    # Telegram answers 200 with {"ok": false} for some failures; other platforms have no "ok" field.
    return 200 <= status < 300 and not (isinstance(body, dict) and body.get("ok") is False)


def _describe(status: int | None, body, error: str, token: str) -> str:
    if status is None:
        text = f"no answer ({error})"
    else:
        # Telegram says why in `description`, Slack in `error`, Discord in `message`.
        detail = next((body[k] for k in ("description", "error", "message") if isinstance(body, dict)
                       and isinstance(body.get(k), str)), None)
        text = f"HTTP {status}" + (f": {detail}" if isinstance(detail, str) else "")
    return text.replace(token, "***") if token else text


async def send(
    client: httpx.AsyncClient,
    request: Outgoing,
    *,
    base_url: str,
    token: str = "",
    secret: str = "",
    policy: RetryPolicy = RetryPolicy(),
    sleep=asyncio.sleep,
) -> int:
    """Send one request with retries; return the number of attempts, or raise DeliveryError."""
    try:
        url = request_url(base_url, request.path, token)
    except AdapterOutputError as e:
        raise DeliveryError(str(e), 0) from None
    body = json.dumps(request.json, ensure_ascii=False).encode()
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if request.auth == "bearer":
        if not token:
            raise DeliveryError("the adapter's request needs a bearer token but the channel has no token configured", 0)
        headers["Authorization"] = f"Bearer {token}"
    if request.sign and secret:
        headers.update(sign_reply(secret, int(time.time()), body))
    attempt = 0
    while True:
        attempt += 1
        status, answer, answer_headers, error = None, None, {}, ""
        try:
            response = await client.request(request.method, url, content=body, headers=headers, timeout=policy.timeout)
            status, answer_headers = response.status_code, response.headers
            try:
                answer = response.json()
            except ValueError:
                answer = None
            if is_success(status, answer):
                return attempt
        except httpx.HTTPError as e:
            error = type(e).__name__
        delay = next_delay(policy, attempt, status, answer, answer_headers)
        if delay is None:
            raise DeliveryError(
                f"gave up after {attempt} attempt{'s' * (attempt > 1)}: {_describe(status, answer, error, token)}",
                attempt,
            )
        await sleep(delay)
