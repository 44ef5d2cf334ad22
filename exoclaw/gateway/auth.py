"""Who is on the other end of a gateway connection.

A connection is authenticated by, in this order: an API token presented at the handshake
(`Authorization: Bearer <token>` or `?token=<token>`), a logged-in staff user's session cookie, or the
loopback rule. A presented token that is wrong, disabled or expired is refused outright, even where
the loopback rule would have let the connection in without one. A connection with none of these may
call `auth` within the grace period. The rules are documented in docs/protocol.md ("Authentication").
"""

import logging
import math
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port

from exoclaw import tokens
from exoclaw.bind import is_loopback_host, parse_bind
from exoclaw.models import ApiToken
from exoclaw.proxies import allowed_host, scope_client_address, trusted_proxy

from .errors import RateLimited, Unauthorized
from .limits import Limits, failed_logins
from .registry import SCOPES

logger = logging.getLogger(__name__)

# Headers a reverse proxy adds. Any of them means the TCP peer is not the client, so a loopback peer
# proves nothing about who is connecting.
PROXY_HEADERS = frozenset(
    {
        b"forwarded",
        b"forwarded-for",
        b"x-forwarded",
        b"x-forwarded-for",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-proto",
        b"x-forwarded-server",
        b"x-original-forwarded-for",
        b"x-real-ip",
        b"x-client-ip",
        b"x-cluster-client-ip",
        b"true-client-ip",
        b"cf-connecting-ip",
        b"fastly-client-ip",
        b"via",
    }
)

# What a staff user's model permissions give them over the gateway (superusers get `admin`). The
# session browser checks the same permissions (agents/admin_sessions.py).
STAFF_SCOPES = (
    ("agents.add_session", "chat"),
    ("agents.view_session", "sessions:read"),
    ("agents.change_session", "sessions:write"),
    ("agents.delete_session", "sessions:write"),
)


@dataclass(frozen=True)
class Principal:
    """`name` is who owns the conversations it starts (`token:alice`, `user:bob`, `loopback`);
    `channels` and `agents` the token's permissions to act as a platform and to name agents, and
    `plugins` the plugins whose tools it sees over MCP ("*": every one); `token_id` the row behind a
    token, re-checked while the connection lives."""

    name: str
    kind: str  # "token", "staff" or "loopback"
    scopes: frozenset[str]
    channels: frozenset[str] = frozenset()
    agents: frozenset[str] = frozenset()
    plugins: frozenset[str] = frozenset()
    token_id: int | None = None

    def allows(self, scope: str | tuple[str, ...] | None) -> bool:
        """Whether the principal holds `scope` (any of them, for a tuple); `admin` holds every one."""
        if scope is None or "admin" in self.scopes:
            return True
        return any(s in self.scopes for s in ((scope,) if isinstance(scope, str) else scope))


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def presented_token(scope: dict) -> str | None:
    """The token the handshake carries, if any. Raises Unauthorized for an Authorization header we
    cannot use, so that a client that meant to authenticate is not silently treated as anonymous."""
    authorization = header(scope, b"authorization")
    if authorization is not None:
        raw = tokens.bearer_token(authorization)
        if raw is None:
            raise Unauthorized("the Authorization header must be 'Bearer <token>'", reason="bad_authorization_header")
        return raw
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def _origin_of(scheme: str, netloc: str) -> str:
    """`scheme://host[:port]` with the default port left out, lower case: one spelling per origin."""
    host, port = split_domain_port(netloc.lower())
    if not host:
        return ""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    default = {"http": "80", "https": "443"}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def served_origin(scope: dict) -> str:
    """The origin this connection was made to (the page it serves lives there): the handshake's Host,
    over http or https as the connection (or a trusted proxy's X-Forwarded-Proto) says."""
    scheme = "https" if scope.get("scheme") in ("wss", "https") else "http"
    client = scope.get("client")
    if client and trusted_proxy(str(client[0])):
        proto = (header(scope, b"x-forwarded-proto") or "").split(",")[0].strip().lower()
        scheme = proto if proto in ("http", "https") else scheme
    host = header(scope, b"host") or ""
    return _origin_of(scheme, host)


def origin_of(scope: dict) -> str | None:
    """The browser's Origin, normalised; None when there is none (not a browser); "" when unusable."""
    origin = header(scope, b"origin")
    if origin is None:
        return None
    parts = urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path not in ("", "/"):
        return ""
    return _origin_of(parts.scheme, parts.netloc)


def own_page(scope: dict) -> bool:
    """The connection comes from a page exoclaw served: its Origin is exactly the origin the
    connection was made to (scheme, host and port), and that host is one of ALLOWED_HOSTS."""
    origin = origin_of(scope)
    if not origin or origin != served_origin(scope):
        return False
    return allowed_host(urlsplit(origin).netloc)


def origin_allowed(scope: dict) -> bool:
    """Browsers send Origin: it must be exoclaw's own page or one of CSRF_TRUSTED_ORIGINS, exactly.
    No Origin: not a browser, allowed."""
    origin = origin_of(scope)
    if origin is None:
        return True
    trusted = {_origin_of(urlsplit(o).scheme, urlsplit(o).netloc) for o in settings.CSRF_TRUSTED_ORIGINS}
    return own_page(scope) or (bool(origin) and origin in trusted)


def has_proxy_headers(scope: dict) -> bool:
    return any(key.lower() in PROXY_HEADERS for key, _ in scope.get("headers", ()))


def loopback_trusted() -> bool:
    """GATEWAY_LOOPBACK_TRUST, which defaults to whether the server listens on loopback; never when
    ALLOWED_HOSTS holds "*" (any Host header, so any page, would pass as exoclaw's own)."""
    if "*" in settings.ALLOWED_HOSTS:
        return False
    if settings.GATEWAY_LOOPBACK_TRUST is not None:
        return settings.GATEWAY_LOOPBACK_TRUST
    try:
        bind_host, _ = parse_bind(settings.EXOCLAW_BIND)
    except ValueError:
        return False
    return is_loopback_host(bind_host)


def loopback_exempt(scope: dict) -> bool:
    """Loopback trust is on, the peer is on loopback with no proxy in between, and a browser (if it is
    one) is on exoclaw's own page, not on another site or another port of this machine."""
    client = scope.get("client")
    return (
        loopback_trusted()
        and bool(client)
        and is_loopback_host(str(client[0]))
        and not has_proxy_headers(scope)
        and (origin_of(scope) is None or own_page(scope))
    )


LOOPBACK = Principal("loopback", "loopback", frozenset({"admin"}))


@database_sync_to_async
def staff_principal(user) -> Principal | None:
    """A logged-in staff user: superusers get `admin`; other staff the scopes their model permissions
    give (STAFF_SCOPES)."""
    if user is None or not user.is_authenticated or not user.is_active or not user.is_staff:
        return None
    if user.is_superuser:
        scopes = frozenset({"admin"})
    else:
        scopes = frozenset(scope for permission, scope in STAFF_SCOPES if user.has_perm(permission))
    return Principal(f"user:{user.get_username()}", "staff", scopes)


def token_principal(row: ApiToken) -> Principal:
    return Principal(
        f"token:{row.name}", "token", frozenset(s for s in row.scopes if s in SCOPES),
        channels=frozenset(row.channels), agents=frozenset(row.agents), plugins=frozenset(row.plugins),
        token_id=row.pk,
    )


def _unauthorized(error: tokens.TokenRefused) -> Unauthorized:
    return Unauthorized(str(error), reason=error.reason)


def refusal(row: ApiToken | None) -> Unauthorized | None:
    """Why a token row does not authenticate (gone, disabled or expired), or None."""
    error = tokens.refusal(row)
    return _unauthorized(error) if error else None


async def check_token(raw: str) -> Principal:
    """Raises Unauthorized unless `raw` is an enabled, unexpired API token (`exoclaw.tokens`, which
    every way in that takes tokens shares)."""
    try:
        return token_principal(await tokens.verify_token(raw))
    except tokens.TokenRefused as e:
        raise _unauthorized(e) from None


async def login(raw: str, address: str, limits: Limits) -> Principal:
    """check_token behind the per-address throttle of failed attempts. A valid token is never refused:
    the throttle answers only for tokens that fail, so nobody is locked out by others' mistakes."""
    throttle = failed_logins()
    try:
        return await check_token(raw)
    except Unauthorized as e:
        wait = await throttle.aretry_after(address, max_failures=limits.auth_failures, window=limits.auth_window)
        if wait:
            logger.warning("gateway login from %s throttled for %.0f s", address, wait)
            raise RateLimited(
                "too many failed logins from this address", reason="auth_throttled", retry_after=math.ceil(wait)
            ) from None
        await throttle.arecord_failure(address, window=limits.auth_window)
        logger.warning("gateway login from %s refused: %s", address, e.reason)
        raise


async def authenticate_handshake(scope: dict, limits: Limits) -> Principal | None:
    """The principal a new connection starts with, or None (it must call `auth`). Raises for a
    refused token."""
    raw = presented_token(scope)
    if raw is not None:
        return await login(raw, scope_client_address(scope), limits)
    return await staff_principal(scope.get("user")) or (LOOPBACK if loopback_exempt(scope) else None)
