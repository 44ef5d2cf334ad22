"""Who is on the other end of a gateway connection.

A connection is authenticated by, in this order: an API token presented at the handshake
(`Authorization: Bearer <token>` or `?token=<token>`), a logged-in staff user's session cookie, or the
loopback exemption. A presented token that is wrong, disabled or expired is refused outright, even
where the exemption would apply. A connection with none of these may call `auth` within the grace
period. The rules are documented in docs/protocol.md ("Authentication").
"""

import hmac
import logging
import math
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

from channels.db import database_sync_to_async
from django.conf import settings
from django.http.request import split_domain_port, validate_host
from django.utils import timezone

from exoclaw.bind import is_loopback_host, parse_bind
from exoclaw.models import ApiToken, hash_token

from .errors import RateLimited, Unauthorized
from .limits import Limits, failed_auth
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


@dataclass(frozen=True)
class Principal:
    name: str
    kind: str  # "token", "staff" or "loopback"
    scopes: frozenset[str]

    def allows(self, scope: str | None) -> bool:
        return scope is None or "admin" in self.scopes or scope in self.scopes


def header(scope: dict, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def client_address(scope: dict) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def presented_token(scope: dict) -> str | None:
    """The token the handshake carries, if any. Raises Unauthorized for an Authorization header we
    cannot use, so that a client that meant to authenticate is not silently treated as anonymous."""
    authorization = header(scope, b"authorization")
    if authorization is not None:
        kind, _, raw = authorization.strip().partition(" ")
        if kind.lower() != "bearer" or not raw.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'", reason="bad_authorization_header")
        return raw.strip()
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token")
    return values[0] if values else None


def origin_allowed(scope: dict) -> bool:
    """Browsers send Origin; it must name one of ALLOWED_HOSTS. No Origin: not a browser, allowed."""
    origin = header(scope, b"origin")
    if origin is None:
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https", "ws", "wss") or not parts.netloc:
        return False
    domain, _ = split_domain_port(parts.netloc)
    allowed = settings.ALLOWED_HOSTS or ([".localhost", "127.0.0.1", "[::1]"] if settings.DEBUG else [])
    return bool(domain) and validate_host(domain, allowed)


def has_proxy_headers(scope: dict) -> bool:
    return any(key.lower() in PROXY_HEADERS for key, _ in scope.get("headers", ()))


def loopback_exempt(scope: dict) -> bool:
    """Server bound to loopback, peer on loopback, and no proxy in between."""
    try:
        bind_host, _ = parse_bind(settings.EXOCLAW_BIND)
    except ValueError:
        return False
    client = scope.get("client")
    return (
        is_loopback_host(bind_host)
        and bool(client)
        and is_loopback_host(str(client[0]))
        and not has_proxy_headers(scope)
    )


LOOPBACK = Principal("loopback", "loopback", frozenset({"admin"}))


def staff_principal(user) -> Principal | None:
    if user is not None and user.is_authenticated and user.is_active and user.is_staff:
        return Principal(f"user:{user.get_username()}", "staff", frozenset({"admin"}))
    return None


@database_sync_to_async
def _token_row(digest: str) -> ApiToken | None:
    return ApiToken.objects.filter(token_hash=digest).first()


@database_sync_to_async
def _mark_used(pk: int) -> None:
    ApiToken.objects.filter(pk=pk).update(last_used_at=timezone.now())


async def check_token(raw: str) -> Principal:
    """Raises Unauthorized unless `raw` is an enabled, unexpired API token or EXOCLAW_TOKEN."""
    digest = hash_token(raw)
    row = await _token_row(digest)
    if row is not None and hmac.compare_digest(row.token_hash, digest):
        if not row.enabled:
            raise Unauthorized("this token is disabled", reason="token_disabled")
        if row.is_expired():
            raise Unauthorized("this token has expired", reason="token_expired")
        await _mark_used(row.pk)
        return Principal(f"token:{row.name}", "token", frozenset(s for s in row.scopes if s in SCOPES))
    # Before `bootstrap` has stored it, EXOCLAW_TOKEN still works, compared in constant time.
    if settings.EXOCLAW_TOKEN and hmac.compare_digest(raw.encode(), settings.EXOCLAW_TOKEN.encode()):
        return Principal("token:EXOCLAW_TOKEN", "token", frozenset({"admin"}))
    raise Unauthorized("unknown token", reason="token_invalid")


async def login(raw: str, address: str, limits: Limits) -> Principal:
    """check_token behind the per-address throttle of failed attempts."""
    wait = failed_auth.retry_after(address, max_failures=limits.auth_failures, window=limits.auth_window)
    if wait:
        logger.warning("gateway login from %s throttled for %.0f s", address, wait)
        raise RateLimited("too many failed logins from this address", reason="auth_throttled", retry_after=math.ceil(wait))
    try:
        return await check_token(raw)
    except Unauthorized as e:
        failed_auth.record_failure(address, window=limits.auth_window)
        logger.warning("gateway login from %s refused: %s", address, e.reason)
        raise


async def authenticate_handshake(scope: dict, limits: Limits) -> Principal | None:
    """The principal a new connection starts with, or None (it must call `auth`). Raises for a
    refused token."""
    raw = presented_token(scope)
    if raw is not None:
        return await login(raw, client_address(scope), limits)
    return staff_principal(scope.get("user")) or (LOOPBACK if loopback_exempt(scope) else None)
