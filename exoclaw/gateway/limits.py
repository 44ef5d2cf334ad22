"""The gateway's limits: their values from settings, a per-connection token bucket and the
per-address throttle of failed logins (in this process, or shared through Redis when REDIS_URL is
set, so every gateway process counts the same failures). The in-process counters are pure (time is
passed in)."""

import asyncio
import time
import weakref
from collections import deque
from dataclasses import dataclass

from django.conf import settings


@dataclass(frozen=True)
class Limits:
    max_frame_bytes: int
    max_batch: int
    max_depth: int
    rate: float
    burst: int
    max_runs: int
    auth_grace: float
    auth_failures: int
    auth_window: float

    @classmethod
    def from_settings(cls) -> "Limits":
        return cls(
            max_frame_bytes=settings.GATEWAY_MAX_FRAME_BYTES,
            max_batch=settings.GATEWAY_MAX_BATCH,
            max_depth=settings.GATEWAY_MAX_DEPTH,
            rate=settings.GATEWAY_RATE,
            burst=settings.GATEWAY_BURST,
            max_runs=settings.GATEWAY_MAX_RUNS,
            auth_grace=settings.GATEWAY_AUTH_GRACE,
            auth_failures=settings.GATEWAY_AUTH_FAILURES,
            auth_window=settings.GATEWAY_AUTH_WINDOW,
        )


class TokenBucket:
    """`rate` tokens a second up to `burst`; each request takes one."""

    def __init__(self, rate: float, burst: int, now: float | None = None):
        self.rate = rate
        self.burst = burst
        self.tokens = float(burst)
        self.stamp = time.monotonic() if now is None else now

    def take(self, now: float | None = None) -> float:
        """0.0 when a token was taken, else the seconds until one will be there."""
        now = time.monotonic() if now is None else now
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class FailedAuthThrottle:
    """Remembers failed logins per client address within a sliding window, in this process.

    The `a`-less methods are synchronous (the admin's login form); `retry_after`/`record_failure` have
    awaitable twins with the same meaning, which the Redis throttle implements too."""

    MAX_ADDRESSES = 10_000

    def __init__(self):
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float, window: float) -> deque[float]:
        stamps = self._failures.get(key, deque())
        while stamps and stamps[0] <= now - window:
            stamps.popleft()
        return stamps

    def retry_after(self, key: str, *, max_failures: int, window: float, now: float | None = None) -> float:
        """0.0 while `key` may try again, else the seconds until its oldest failure leaves the window."""
        now = time.monotonic() if now is None else now
        stamps = self._recent(key, now, window)
        if not stamps:
            self._failures.pop(key, None)
        if len(stamps) < max_failures:
            return 0.0
        return stamps[0] + window - now

    def record_failure(self, key: str, *, window: float, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        if key not in self._failures and len(self._failures) >= self.MAX_ADDRESSES:
            # Many addresses failing at once: forget the quietest instead of growing without bound.
            self._failures.pop(min(self._failures, key=lambda k: self._failures[k][-1] if self._failures[k] else 0))
        stamps = self._recent(key, now, window)
        stamps.append(now)
        self._failures[key] = stamps

    def clear(self) -> None:
        self._failures.clear()

    async def aretry_after(self, key: str, *, max_failures: int, window: float) -> float:
        return self.retry_after(key, max_failures=max_failures, window=window)

    async def arecord_failure(self, key: str, *, window: float) -> None:
        self.record_failure(key, window=window)


# Each address's failures are a sorted set of timestamps: drop those out of the window, count, and
# (when recording) add one; the set expires with the window.
_RETRY_AFTER = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then return '0' end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]
return tostring(oldest + ARGV[2] - ARGV[1])
"""
_RECORD = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1] - ARGV[2])
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1] .. ':' .. ARGV[3])
redis.call('PEXPIRE', KEYS[1], math.ceil(ARGV[2] * 1000))
return 1
"""


class RedisFailedAuthThrottle:
    """The same throttle kept in Redis, shared by every process that uses the same Redis and prefix."""

    def __init__(self, url: str, prefix: str):
        self.url = url
        self.prefix = f"{prefix}:authfail:"
        self._sync = None
        self._clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, object]" = weakref.WeakKeyDictionary()

    def _sync_client(self):
        import redis

        if self._sync is None:
            self._sync = redis.Redis.from_url(self.url)
        return self._sync

    def _async_client(self):
        import redis.asyncio as aioredis

        # redis.asyncio connections belong to the loop that opened them.
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client = self._clients[loop] = aioredis.from_url(self.url)
        return client

    @staticmethod
    def _unique() -> str:
        return f"{time.time_ns()}"

    def retry_after(self, key: str, *, max_failures: int, window: float) -> float:
        return float(self._sync_client().eval(_RETRY_AFTER, 1, self.prefix + key, time.time(), window, max_failures))

    def record_failure(self, key: str, *, window: float) -> None:
        self._sync_client().eval(_RECORD, 1, self.prefix + key, time.time(), window, self._unique())

    async def aretry_after(self, key: str, *, max_failures: int, window: float) -> float:
        client = self._async_client()
        return float(await client.eval(_RETRY_AFTER, 1, self.prefix + key, time.time(), window, max_failures))

    async def arecord_failure(self, key: str, *, window: float) -> None:
        await self._async_client().eval(_RECORD, 1, self.prefix + key, time.time(), window, self._unique())


failed_auth = FailedAuthThrottle()
_shared: dict[tuple[str, str], RedisFailedAuthThrottle] = {}


def failed_logins() -> FailedAuthThrottle | RedisFailedAuthThrottle:
    """The throttle this process uses: shared through Redis when REDIS_URL is set, else in memory."""
    if not settings.REDIS_URL:
        return failed_auth
    key = (settings.REDIS_URL, settings.REDIS_PREFIX)
    if key not in _shared:
        _shared[key] = RedisFailedAuthThrottle(*key)
    return _shared[key]
