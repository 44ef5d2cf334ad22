"""Helpers for the gateway tests: communicators over the real ASGI stack, tokens, staff sessions."""

import json
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from exoclaw.asgi import application
from exoclaw.gateway.limits import failed_auth
from exoclaw.models import ApiToken

REMOTE = ("203.0.113.5", 50000)
LOOPBACK = ("127.0.0.1", 50000)


def communicator(path="/ws", *, headers=(), client=REMOTE) -> WebsocketCommunicator:
    c = WebsocketCommunicator(application, path, headers=[(k.lower().encode(), v.encode()) for k, v in headers])
    c.scope["client"] = client  # the task has not run yet, so the consumer sees this address
    return c


def request(method, params=None, rid=1) -> dict:
    msg = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        msg["params"] = params
    return msg


async def call(c: WebsocketCommunicator, method, params=None, rid=1) -> dict:
    await c.send_json_to(request(method, params, rid))
    reply = await c.receive_json_from(timeout=3)
    assert reply.get("id") == rid, reply
    return reply


async def send_raw(c: WebsocketCommunicator, text: str):
    await c.send_input({"type": "websocket.receive", "text": text})
    return json.loads(await c.receive_from(timeout=3))


def error_of(reply: dict) -> tuple[int, str]:
    assert "error" in reply and "result" not in reply, reply
    return reply["error"]["code"], reply["error"]["data"]["reason"]


async def connected(c: WebsocketCommunicator) -> WebsocketCommunicator:
    ok, _ = await c.connect(timeout=3)
    assert ok, "the gateway refused the handshake"
    return c


async def closed_with(c: WebsocketCommunicator) -> tuple[int, str]:
    """How the server closed an accepted connection: the `gateway.closing` notification it sent first
    must agree with the close frame. Returns (code, reason)."""
    out = await c.receive_output(timeout=3)
    while out["type"] == "websocket.accept":
        out = await c.receive_output(timeout=3)
    assert out["type"] == "websocket.send", out
    closing = json.loads(out["text"])
    assert closing["method"] == "gateway.closing" and "id" not in closing, closing
    out = await c.receive_output(timeout=3)
    assert out["type"] == "websocket.close", out
    assert (out["code"], out["reason"]) == (closing["params"]["code"], closing["params"]["reason"])
    return out["code"], out["reason"]


@pytest.fixture(autouse=True)
def fresh_throttle():
    failed_auth.clear()
    yield
    failed_auth.clear()


@pytest.fixture
def make_token(transactional_db):
    @database_sync_to_async
    def make(scopes=("admin",), *, enabled=True, expires_in=None, name=None) -> str:
        row = ApiToken(name=name or f"t-{uuid.uuid4().hex[:6]}", scopes=list(scopes), enabled=enabled)
        raw = row.set_new_token()
        if expires_in is not None:
            row.expires_at = timezone.now() + timedelta(seconds=expires_in)
        row.save()
        return raw

    return make


@pytest.fixture
def session_cookie(transactional_db):
    @database_sync_to_async
    def make(*, staff=True, superuser=False, permissions=()) -> str:
        """A logged-in user's session cookie; `permissions` are codenames of the agents app's models."""
        from django.contrib.auth.models import Permission

        user = get_user_model().objects.create_user(
            f"u{uuid.uuid4().hex[:6]}", password="x", is_staff=staff, is_superuser=superuser
        )
        user.user_permissions.add(*Permission.objects.filter(content_type__app_label="agents", codename__in=permissions))
        browser = Client()
        browser.force_login(user)
        return f"sessionid={browser.cookies['sessionid'].value}"

    return make


@pytest.fixture
def probe_methods():
    """Register extra methods for one test (to reach error paths no built-in method has), then remove them."""
    from exoclaw.gateway.registry import registry

    added = []

    def add(name, handler, *, scope=None, params=None, public=False):
        assert registry.get(name) is None, f"{name} is a real method; pick another probe name"
        registry.register(name, handler, scope=scope, params=params, public=public)
        added.append(name)

    yield add
    for name in added:
        registry.methods.pop(name, None)
