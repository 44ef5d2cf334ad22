"""GET /healthz, /readyz and /metrics through the ASGI application: who may scrape, and what readiness
names when a dependency does not answer."""

import json
import socket

import pytest
from channels.testing import HttpCommunicator
from prometheus_client.parser import text_string_to_metric_families

from common import metrics
from exoclaw.asgi import application
from tests.gateway_support import LOOPBACK, REMOTE, fresh_throttle, make_token  # noqa: F401

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def get(path: str, *, client=REMOTE, headers=()) -> tuple[int, dict, bytes]:
    headers = [("Host", "127.0.0.1:7200"), *headers]
    c = HttpCommunicator(application, "GET", path, headers=[(k.lower().encode(), v.encode()) for k, v in headers])
    c.scope["client"] = client
    response = await c.get_response(timeout=10)
    return response["status"], {k.decode(): v.decode() for k, v in response["headers"]}, response["body"]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: nothing listens there


def samples(body: bytes) -> dict[tuple[str, tuple], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


async def test_healthz_answers_without_asking_anything_else():
    status, _, body = await get("/healthz")
    assert (status, json.loads(body)) == (200, {"ok": True})


async def test_readyz_is_ready_when_the_database_and_the_session_store_answer(process_store):
    status, _, body = await get("/readyz")
    assert status == 200, body
    assert json.loads(body) == {"ready": True, "checks": {"database": "ok", "session_store": "ok"}}


async def test_readyz_answers_503_naming_redis_when_the_configured_redis_is_down(process_store, settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port()}/0"
    status, _, body = await get("/readyz")
    assert status == 503, body
    assert json.loads(body) == {
        "ready": False,
        "checks": {"database": "ok", "session_store": "ok", "redis": "failed"},
        "failing": ["redis"],
    }


async def test_readyz_asks_the_real_redis_when_it_is_configured(process_store, settings, redis_url):
    settings.REDIS_URL = redis_url
    status, _, body = await get("/readyz")
    assert status == 200, body
    assert json.loads(body)["checks"]["redis"] == "ok"


async def test_metrics_are_served_to_a_loopback_client_without_a_token():
    metrics.WEBHOOK_EVENTS.labels(channel="probe-test", status="accepted").inc()
    status, headers, body = await get("/metrics", client=LOOPBACK)
    assert status == 200, body
    assert headers["Content-Type"].startswith("text/plain; version=")
    assert samples(body)[("exoclaw_webhook_events_total", (("channel", "probe-test"), ("status", "accepted")))] >= 1
    assert b"# TYPE exoclaw_run_duration_seconds histogram" in body


async def test_metrics_refuse_a_remote_client_without_a_token():
    status, headers, body = await get("/metrics", client=REMOTE)
    assert status == 401, body
    assert json.loads(body)["error"] == "auth_required"
    assert headers["WWW-Authenticate"] == "Bearer"


async def test_metrics_refuse_a_loopback_peer_that_a_proxy_relayed():
    status, _, body = await get("/metrics", client=LOOPBACK, headers=[("X-Forwarded-For", "203.0.113.7")])
    assert status == 401, body


async def test_metrics_refuse_a_token_without_the_metrics_scope_from_a_remote_client(make_token, fresh_throttle):  # noqa: F811
    raw = await make_token(["chat", "sessions:read"])
    status, _, body = await get("/metrics", client=REMOTE, headers=[("Authorization", f"Bearer {raw}")])
    assert status == 403, body
    assert json.loads(body)["error"] == "missing_scope"
    assert b"exoclaw_" not in body


async def test_metrics_serve_a_token_with_the_metrics_scope_from_a_remote_client(make_token, fresh_throttle):  # noqa: F811
    raw = await make_token(["metrics"])
    status, _, body = await get("/metrics", client=REMOTE, headers=[("Authorization", f"Bearer {raw}")])
    assert status == 200, body
    assert b"# TYPE exoclaw_runs_total counter" in body


async def test_metrics_refuse_an_unknown_token_even_from_loopback(fresh_throttle):  # noqa: F811
    status, _, body = await get("/metrics", client=LOOPBACK, headers=[("Authorization", "Bearer exo_not_a_real_token")])
    assert status == 401, body
    assert json.loads(body)["error"] == "token_invalid"
