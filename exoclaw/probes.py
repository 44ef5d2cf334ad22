"""What load balancers, orchestrators and Prometheus ask a server (docs/deploy.md, "Health and metrics"):

- `GET /healthz`: the process serves HTTP. No dependency is asked, so a slow database never gets a
  healthy process restarted.
- `GET /readyz`: the database, the session store and, when `REDIS_URL` is set, Redis answer; 503
  naming each one that does not (the reason goes to the server log, not to the unauthenticated caller).
- `GET /metrics`: the Prometheus text format (common/metrics.py), for loopback clients that no proxy
  relayed, and for API tokens with the `metrics` scope (`Authorization: Bearer …`).
"""

import asyncio
import logging

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from common import metrics
from exoclaw.bind import is_loopback_host
from exoclaw.gateway.auth import PROXY_HEADERS, login
from exoclaw.gateway.errors import RateLimited, Unauthorized
from exoclaw.gateway.health import run_health_check
from exoclaw.gateway.limits import Limits
from exoclaw.proxies import request_client_address
from exoclaw.tokens import bearer_token

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 2.0
METRICS_SCOPE = "metrics"
_PROXY_META = tuple("HTTP_" + h.decode().upper().replace("-", "_") for h in PROXY_HEADERS)


@require_GET
async def healthz(request):
    return JsonResponse({"ok": True})


def _database() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()


async def _check_database() -> None:
    await sync_to_async(_database)()


async def _check_session_store() -> None:
    state = await run_health_check("store")
    if not state.startswith("ok"):
        raise RuntimeError(state)


async def _check_redis() -> None:
    import redis.asyncio as redis

    client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=CHECK_TIMEOUT, socket_timeout=CHECK_TIMEOUT)
    try:
        await client.ping()
    finally:
        await client.aclose()


def readiness_checks() -> dict:
    checks = {"database": _check_database, "session_store": _check_session_store}
    if settings.REDIS_URL:
        checks["redis"] = _check_redis
    return checks


async def _run(name: str, check) -> str:
    try:
        await asyncio.wait_for(check(), CHECK_TIMEOUT)
        return "ok"
    except TimeoutError:
        log.warning("readiness: %s gave no answer within %g s", name, CHECK_TIMEOUT)
        return "no answer"
    except Exception as e:
        log.warning("readiness: %s failed: %s: %s", name, type(e).__name__, e)
        return "failed"


@require_GET
async def readyz(request):
    checks = readiness_checks()
    states = dict(zip(checks, await asyncio.gather(*(_run(n, c) for n, c in checks.items()))))
    failing = [name for name, state in states.items() if state != "ok"]
    body = {"ready": not failing, "checks": states}
    if failing:
        body["failing"] = failing
    return JsonResponse(body, status=503 if failing else 200)


def from_loopback(request) -> bool:
    """The TCP peer is on this machine and no proxy relayed the request."""
    return is_loopback_host(request.META.get("REMOTE_ADDR", "")) and not any(h in request.META for h in _PROXY_META)


def _refuse(status: int, reason: str, message: str, **headers) -> JsonResponse:
    response = JsonResponse({"ok": False, "error": reason, "message": message}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


@require_GET
async def metrics_view(request):
    authorization = request.headers.get("Authorization")
    if authorization is not None:
        raw = bearer_token(authorization)
        if raw is None:
            return _refuse(401, "bad_authorization_header", "The Authorization header must be 'Bearer <token>'.",
                           WWW_Authenticate="Bearer")
        try:
            principal = await login(raw, request_client_address(request), Limits.from_settings())
        except RateLimited as e:
            return _refuse(429, e.reason, str(e.detail), Retry_After=str(e.extra.get("retry_after", 60)))
        except Unauthorized as e:
            return _refuse(401, e.reason, str(e.detail), WWW_Authenticate="Bearer")
        if not principal.allows(METRICS_SCOPE):
            return _refuse(403, "missing_scope", f"This token lacks the {METRICS_SCOPE!r} scope.")
    elif not from_loopback(request):
        return _refuse(401, "auth_required", f"Send an API token with the {METRICS_SCOPE!r} scope as 'Authorization: "
                       "Bearer <token>'; only clients on this machine may scrape without one.", WWW_Authenticate="Bearer")
    body, content_type = await sync_to_async(metrics.exposition, thread_sensitive=False)()
    return HttpResponse(body, content_type=content_type)
