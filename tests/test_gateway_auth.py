"""Every way to authenticate to the gateway, every way to be refused, the throttle, and tokens kept
out of the log."""

import io
import logging

import pytest
from channels.testing import HttpCommunicator
from django.test import override_settings

from exoclaw.asgi import application
from exoclaw.gateway.registry import Param
from exoclaw.models import ApiToken, hash_token
from tests.gateway_support import (
    LOOPBACK,
    REMOTE,
    call,
    closed_with,
    communicator,
    connected,
    error_of,
    fresh_throttle,  # noqa: F401
    make_token,  # noqa: F401
    probe_methods,  # noqa: F401
    session_cookie,  # noqa: F401
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def principal_of(c) -> str:
    reply = await call(c, "status", rid="who")
    assert "result" in reply, f"not authenticated: {reply}"
    return reply["result"]["principal"]


async def assert_unauthenticated(c):
    assert error_of(await call(c, "status", rid="who")) == (-32001, "auth_required")


async def test_bearer_header_authenticates(make_token):
    raw = await make_token(["chat"], name="cli")
    c = await connected(communicator(headers=[("Authorization", f"Bearer {raw}")]))
    assert await principal_of(c) == "token:cli"
    await c.disconnect()


async def test_query_token_authenticates_and_records_last_use(make_token):
    raw = await make_token(["chat"], name="browser")
    c = await connected(communicator(f"/ws?token={raw}"))
    assert await principal_of(c) == "token:browser"
    row = await ApiToken.objects.aget(token_hash=hash_token(raw))
    assert row.last_used_at is not None
    await c.disconnect()


async def test_auth_method_authenticates_an_open_connection(make_token):
    raw = await make_token(["chat", "sessions:read"], name="late")
    c = await connected(communicator())
    await assert_unauthenticated(c)
    reply = await call(c, "auth", {"token": raw})
    assert reply["result"] == {"principal": "token:late", "scopes": ["chat", "sessions:read"]}
    assert await principal_of(c) == "token:late"
    await c.disconnect()


async def test_exoclaw_token_works_before_bootstrap_stored_it():
    with override_settings(EXOCLAW_TOKEN="exo_bootstrap_token_for_tests_0001"):
        c = await connected(communicator("/ws?token=exo_bootstrap_token_for_tests_0001"))
        assert await principal_of(c) == "token:EXOCLAW_TOKEN"
        assert "result" in await call(c, "plugin.list")
        await c.disconnect()


async def test_staff_session_cookie_authenticates_with_admin_scope(session_cookie):
    c = await connected(communicator(headers=[("Cookie", await session_cookie(staff=True))]))
    assert (await principal_of(c)).startswith("user:")
    assert "result" in await call(c, "plugin.list")
    await c.disconnect()


async def test_a_non_staff_session_is_not_enough(session_cookie):
    c = await connected(communicator(headers=[("Cookie", await session_cookie(staff=False))]))
    await assert_unauthenticated(c)
    await c.disconnect()


async def test_loopback_peer_on_a_loopback_server_without_proxy_headers_is_exempt():
    with override_settings(EXOCLAW_BIND="127.0.0.1:7200"):
        c = await connected(communicator(client=LOOPBACK))
        assert await principal_of(c) == "loopback"
        await c.disconnect()
        c = await connected(communicator(client=("::1", 4000)))
        assert await principal_of(c) == "loopback"
        await c.disconnect()


@pytest.mark.parametrize(
    "proxy_header",
    [("X-Forwarded-For", "198.51.100.7"), ("Forwarded", "for=198.51.100.7"), ("X-Real-IP", "198.51.100.7"), ("Via", "1.1 nginx")],
)
async def test_loopback_peer_behind_a_proxy_is_not_exempt(proxy_header):
    with override_settings(EXOCLAW_BIND="127.0.0.1:7200"):
        c = await connected(communicator(client=LOOPBACK, headers=[proxy_header]))
        await assert_unauthenticated(c)
        await c.disconnect()


async def test_loopback_peer_is_not_exempt_when_the_server_listens_on_all_addresses():
    with override_settings(EXOCLAW_BIND="0.0.0.0:7200"):
        c = await connected(communicator(client=LOOPBACK))
        await assert_unauthenticated(c)
        await c.disconnect()


async def test_remote_peer_is_not_exempt():
    c = await connected(communicator(client=REMOTE))
    await assert_unauthenticated(c)
    await c.disconnect()


@pytest.mark.parametrize(
    "kind,reason",
    [("unknown", "token_invalid"), ("expired", "token_expired"), ("disabled", "token_disabled")],
)
async def test_a_refused_token_at_the_handshake_closes_the_connection_even_on_loopback(make_token, kind, reason):
    raw = {
        "unknown": "exo_not_a_real_token_at_all_000000",
        "expired": await make_token(["admin"], expires_in=-1),
        "disabled": await make_token(["admin"], enabled=False),
    }[kind]
    with override_settings(EXOCLAW_BIND="127.0.0.1:7200"):
        c = communicator(f"/ws?token={raw}", client=LOOPBACK)
        await c.connect(timeout=3)
        assert await closed_with(c) == (4401, reason)


async def test_a_refused_bearer_token_closes_the_connection(make_token):
    c = communicator(headers=[("Authorization", f"Bearer {await make_token(expires_in=-5)}")])
    await c.connect(timeout=3)
    assert await closed_with(c) == (4401, "token_expired")


async def test_an_authorization_header_that_is_not_bearer_is_refused():
    c = communicator(headers=[("Authorization", "Basic dXNlcjpwYXNz")])
    await c.connect(timeout=3)
    assert await closed_with(c) == (4401, "bad_authorization_header")


async def test_a_refused_auth_call_keeps_the_connection_open_for_another_try(make_token):
    good = await make_token(["chat"], name="good")
    expired = await make_token(["chat"], expires_in=-1)
    c = await connected(communicator())
    assert error_of(await call(c, "auth", {"token": "exo_wrong_wrong_wrong_wrong_wrong"})) == (-32001, "token_invalid")
    assert error_of(await call(c, "auth", {"token": expired})) == (-32001, "token_expired")
    assert error_of(await call(c, "auth", {})) == (-32602, "invalid_params")
    await assert_unauthenticated(c)
    assert (await call(c, "auth", {"token": good}))["result"]["principal"] == "token:good"
    await c.disconnect()


async def test_scopes_gate_methods(make_token):
    c = await connected(communicator(f"/ws?token={await make_token(['chat'])}"))
    assert error_of(await call(c, "routing.resolve", {})) == (-32004, "no_route")
    reply = await call(c, "plugin.list")
    assert error_of(reply) == (-32002, "missing_scope") and reply["error"]["data"]["required"] == "admin"
    reply = await call(c, "sessions.history")
    assert error_of(reply) == (-32002, "missing_scope")
    assert "result" in await call(c, "agents.list")
    await c.disconnect()


async def test_a_token_with_no_scopes_may_only_call_unscoped_methods(make_token):
    c = await connected(communicator(f"/ws?token={await make_token([])}"))
    assert "result" in await call(c, "status")
    assert error_of(await call(c, "routing.resolve", {}))[0] == -32002
    await c.disconnect()


async def test_origins_outside_allowed_hosts_are_refused_before_the_handshake(make_token):
    raw = await make_token()
    with override_settings(ALLOWED_HOSTS=["chat.example.com"]):
        for origin in ("https://evil.example.net", "null", "https://chat.example.com.evil.net"):
            ok, code = await communicator(f"/ws?token={raw}", headers=[("Origin", origin)]).connect(timeout=3)
            assert not ok, f"{origin} was let in"
        c = await connected(communicator(f"/ws?token={raw}", headers=[("Origin", "https://chat.example.com")]))
        await c.disconnect()
        c = await connected(communicator(f"/ws?token={raw}"))
        await c.disconnect()


async def test_unauthenticated_connections_are_closed_after_the_grace_period():
    with override_settings(GATEWAY_AUTH_GRACE=0.2):
        c = await connected(communicator())
    assert await closed_with(c) == (4401, "auth_timeout")


async def test_a_connection_that_authenticates_in_time_stays_open(make_token):
    raw = await make_token(name="quick")
    with override_settings(GATEWAY_AUTH_GRACE=0.2):
        c = await connected(communicator())
    assert "result" in await call(c, "auth", {"token": raw})
    assert await c.receive_nothing(timeout=0.5)
    assert await principal_of(c) == "token:quick"
    await c.disconnect()


async def test_repeated_bad_tokens_are_throttled_per_address(make_token):
    good = await make_token(name="good")
    with override_settings(GATEWAY_AUTH_FAILURES=3, GATEWAY_AUTH_WINDOW=60):
        c = await connected(communicator(client=("198.51.100.1", 1)))
        for _ in range(3):
            assert error_of(await call(c, "auth", {"token": "exo_guess_guess_guess_guess_guess"}))[1] == "token_invalid"
        reply = await call(c, "auth", {"token": good})
        assert error_of(reply) == (-32003, "auth_throttled") and 55 <= reply["error"]["data"]["retry_after"] <= 60
        await assert_unauthenticated(c)
        assert "result" in await call(c, "ping")

        refused = communicator(f"/ws?token={good}", client=("198.51.100.1", 2))
        await refused.connect(timeout=3)
        assert await closed_with(refused) == (4429, "auth_throttled")

        other = await connected(communicator(f"/ws?token={good}", client=("198.51.100.2", 1)))
        assert await principal_of(other) == "token:good"
        await other.disconnect()
        await c.disconnect()


@pytest.fixture
def all_log_output():
    """Everything the configured log handler (settings.LOGGING, with its filters) writes, at DEBUG."""
    root = logging.getLogger()
    (console,) = [h for h in root.handlers if type(h) is logging.StreamHandler]
    buffer = io.StringIO()
    old_stream, old_level = console.setStream(buffer), root.level
    root.setLevel(logging.DEBUG)
    yield buffer
    root.setLevel(old_level)
    console.setStream(old_stream)


async def test_a_query_token_never_appears_in_the_log(make_token, probe_methods, all_log_output):
    raw = await make_token(["admin"], name="leaky")
    wrong = raw[:-4] + "XXXX"

    async def leak(ctx, *, echo):
        logging.getLogger("exoclaw.anywhere").info("client sent %s", echo)
        raise RuntimeError(f"failed while holding {echo}")

    probe_methods("probe.leak", leak, params={"echo": Param(str)})
    c = await connected(communicator(f"/ws?token={raw}", headers=[("Cookie", f"token={raw}")]))
    assert await principal_of(c) == "token:leaky"
    assert error_of(await call(c, "probe.leak", {"echo": raw}))[0] == -32603
    assert error_of(await call(c, "auth", {"token": wrong}))[1] == "token_invalid"
    await c.disconnect()
    http = HttpCommunicator(application, "GET", f"/no-such-page/?token={raw}", headers=[(b"host", b"127.0.0.1")])
    assert (await http.get_response(timeout=3))["status"] == 404

    output = all_log_output.getvalue()
    assert "gateway method probe.leak failed" in output and "Not Found: /no-such-page/" in output
    assert "client sent [redacted]" in output and "failed while holding [redacted]" in output
    assert raw not in output and raw[4:20] not in output and wrong not in output
