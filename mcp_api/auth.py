"""Who is calling /mcp: an API token (`Authorization: Bearer <token>`) with the `tools` scope, checked
on every HTTP request by the gateway's own token check and failed-login throttle, and which plugins'
tools it may see. The one module of mcp_api that uses the gateway (the rest takes `Principal` from
here)."""

from dataclasses import dataclass, field

from exoclaw.gateway.auth import Principal, header, login, origin_allowed
from exoclaw.gateway.errors import FORBIDDEN, RATE_LIMITED, UNAUTHORIZED, RateLimited, Unauthorized
from exoclaw.gateway.limits import Limits
from exoclaw.proxies import allowed_host, scope_client_address
from exoclaw.tokens import bearer_token

__all__ = ["Principal", "Refused", "authenticate", "sees_plugin"]

SCOPE = "tools"


@dataclass
class Refused(Exception):
    """An HTTP answer instead of MCP: status, JSON-RPC error code, a sentence, extra headers."""

    status: int
    code: int
    message: str
    reason: str
    headers: dict[str, str] = field(default_factory=dict)


async def authenticate(scope: dict) -> Principal:
    """The principal behind a request to /mcp, or Refused."""
    if not allowed_host(header(scope, b"host") or ""):
        raise Refused(400, FORBIDDEN.code, "this Host is not one of ALLOWED_HOSTS", "host_not_allowed")
    if not origin_allowed(scope):
        raise Refused(403, FORBIDDEN.code, "this Origin may not use exoclaw", "origin_not_allowed")
    authorization = header(scope, b"authorization")
    challenge = {"www-authenticate": 'Bearer realm="exoclaw"'}
    if authorization is None:
        raise Refused(401, UNAUTHORIZED.code, "send an API token as 'Authorization: Bearer <token>'", "auth_required",
                      challenge)
    raw = bearer_token(authorization)
    if raw is None:
        raise Refused(401, UNAUTHORIZED.code, "the Authorization header must be 'Bearer <token>'",
                      "bad_authorization_header", challenge)
    try:
        principal = await login(raw, scope_client_address(scope), Limits.from_settings())
    except RateLimited as e:
        raise Refused(429, RATE_LIMITED.code, e.detail, e.reason, {"retry-after": str(e.extra["retry_after"])}) from None
    except Unauthorized as e:
        raise Refused(401, UNAUTHORIZED.code, e.detail, e.reason, challenge) from None
    if not principal.allows(SCOPE):
        raise Refused(403, FORBIDDEN.code, f"this token lacks the {SCOPE} scope", "missing_scope")
    return principal


def sees_plugin(principal: Principal, plugin: str) -> bool:
    """Whether the token's plugin permission (`--plugin`, "*": every one; admin: every one) covers `plugin`."""
    return "admin" in principal.scopes or "*" in principal.plugins or plugin in principal.plugins
