"""The gateway's limits: their values from settings, a per-connection token bucket and the
per-address throttle of failed logins. The two counters are pure (time is passed in)."""

import time
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
    """Remembers failed logins per client address within a sliding window."""

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


failed_auth = FailedAuthThrottle()
