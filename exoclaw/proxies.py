"""Who the client is when exoclaw sits behind a reverse proxy (TRUSTED_PROXIES), and whether the
host it asked for is one of ALLOWED_HOSTS.

Every way in that counts or throttles by client address uses this: the gateway (`exoclaw/gateway/auth.py`),
the admin's login form, /mcp and the OpenAI-compatible API. Imports nothing of the gateway.
"""

import ipaddress
from functools import lru_cache

from django.conf import settings
from django.http.request import split_domain_port, validate_host

# What ALLOWED_HOSTS stands for when it is set empty (Django's own choice for DEBUG).
LOCAL_HOSTS = [".localhost", "127.0.0.1", "[::1]"]


@lru_cache(maxsize=8)
def _networks(cidrs: tuple[str, ...]) -> tuple:
    return tuple(ipaddress.ip_network(c, strict=False) for c in cidrs)


def trusted_proxy(address: str) -> bool:
    """Whether `address` is one of TRUSTED_PROXIES (addresses or networks)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in net for net in _networks(tuple(settings.TRUSTED_PROXIES)))


def real_client_address(peer: str, forwarded_for: str | None) -> str:
    """The client's address: the TCP peer, unless the peer is one of TRUSTED_PROXIES; then the last
    address in X-Forwarded-For that is not a trusted proxy (proxies append the address they saw, so
    what a client wrote itself stands to the left and is never taken). Forwarded headers from anyone
    else are ignored."""
    if not forwarded_for or not trusted_proxy(peer):
        return peer
    hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
    for hop in reversed(hops):
        if not trusted_proxy(hop):
            return hop
    return hops[0] if hops else peer


def scope_client_address(scope: dict) -> str:
    """`real_client_address` for an ASGI scope (the gateway, /mcp, /v1). Repeated X-Forwarded-For
    headers count as one list, as Django joins them."""
    client = scope.get("client")
    forwarded = [v.decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == b"x-forwarded-for"]
    return real_client_address(str(client[0]) if client else "unknown", ",".join(forwarded) or None)


def allowed_host(netloc: str) -> bool:
    """Whether `host[:port]` (a Host header, an Origin's) names this server: one of ALLOWED_HOSTS, which
    when empty means the local names under DEBUG and nothing otherwise, as for Django's own pages."""
    domain, _ = split_domain_port(netloc)
    return validate_host(domain, settings.ALLOWED_HOSTS or (LOCAL_HOSTS if settings.DEBUG else []))


def request_client_address(request) -> str:
    """`real_client_address` for a Django request (the admin's login, /metrics)."""
    return real_client_address(request.META.get("REMOTE_ADDR") or "unknown", request.META.get("HTTP_X_FORWARDED_FOR"))
