"""Who is asking: the API token in `Authorization: Bearer <token>`, as an origin of the run service.

- The token is checked by `exoclaw.tokens` (the same check the gateway makes; a check is reused for
  GATEWAY_TOKEN_RECHECK_SECONDS, the period in which a gateway connection notices a revoked token)
  and needs scope `chat` (or `admin`). Its conversations belong to `token:<name>`, the same principal it is on the gateway,
  so `sessions.history` over the gateway reads what the API recorded.
- Refused tokens count against the client's address in the same throttle as the gateway's logins
  and the admin's login form (`exoclaw.gateway.limits.failed_logins`, shared through Redis when
  REDIS_URL is set): switching doors does not buy a guesser more tries. A valid token is never
  refused by it.
- Each token may make OPENAI_COMPAT_RATE requests a second (bursts of OPENAI_COMPAT_BURST), counted in
  this process.
"""

import logging
from collections import OrderedDict
from dataclasses import dataclass

from django.conf import settings

from agents.runtime import service
from exoclaw.gateway.limits import TokenBucket, failed_logins
from exoclaw.tokens import TokenRefused, bearer_token, recent_token

from .errors import ApiError, unauthorized
from .http import Request

log = logging.getLogger(__name__)

ENTRY = "openai"
EVERY = frozenset({"*"})
MAX_BUCKETS = 10_000


@dataclass(frozen=True)
class Caller:
    token_id: int
    origin: service.Origin

    def may_use(self, agent: str) -> bool:
        return self.origin.may_name_agent(agent)


_buckets: "OrderedDict[int, TokenBucket]" = OrderedDict()


def _take(token_id: int) -> float:
    """0.0, or the seconds until this token may make its next request."""
    bucket = _buckets.pop(token_id, None) or TokenBucket(settings.OPENAI_COMPAT_RATE, settings.OPENAI_COMPAT_BURST)
    _buckets[token_id] = bucket
    while len(_buckets) > MAX_BUCKETS:
        _buckets.popitem(last=False)
    return bucket.take()


def presented_token(authorization: str | None) -> str:
    if not authorization:
        raise unauthorized("No API key: send an exoclaw API token as 'Authorization: Bearer <token>'.")
    raw = bearer_token(authorization)
    if raw is None:
        raise unauthorized("The Authorization header must be 'Bearer <token>'.")
    return raw


async def caller(request: Request) -> Caller:
    """The token's holder as the run service knows it; raises TokenRefused or ApiError (401, 403 or 429)."""
    address = request.client
    raw = presented_token(request.headers.get("authorization"))
    try:
        row = await recent_token(raw)
    except TokenRefused as e:
        throttle = failed_logins()
        wait = await throttle.aretry_after(address, max_failures=settings.GATEWAY_AUTH_FAILURES,
                                           window=settings.GATEWAY_AUTH_WINDOW)
        if wait:
            log.warning("API token from %s throttled for %.0f s", address, wait)
            raise ApiError(429, "Too many refused API tokens from this address. Wait and try again.",
                           code="auth_throttled", retry_after=wait) from None
        await throttle.arecord_failure(address, window=settings.GATEWAY_AUTH_WINDOW)
        log.warning("API token from %s refused: %s", address, e.reason)
        raise
    if not {"chat", "admin"} & set(row.scopes):
        raise ApiError(403, f"The token {row.name!r} lacks the scope `chat`, which the API needs.",
                       code="missing_scope")
    wait = _take(row.pk)
    if wait:
        raise ApiError(429, f"Rate limit: at most {settings.OPENAI_COMPAT_RATE:g} requests a second per token. "
                       "Wait and try again.", code="rate_limit_exceeded", retry_after=wait)
    every = "admin" in row.scopes
    # The API never acts as a platform (no channel permissions) and touches only the token's own
    # conversations; naming an agent as the model needs the token's agent permission.
    origin = service.Origin(f"token:{row.name}", ENTRY, agents=EVERY if every else frozenset(row.agents))
    return Caller(row.pk, origin)
