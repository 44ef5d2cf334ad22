"""Every way to authenticate to the gateway, every way to be refused, the throttle, and tokens kept
out of the log."""

import io
import logging

import pytest
from channels.db import database_sync_to_async
from channels.testing import HttpCommunicator
from django.core.management import call_command
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
    send_raw,
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


async def test_exoclaw_token_authenticates_only_through_the_row_bootstrap_stored():
    raw = "exo_bootstrap_token_for_tests_0001"
    with override_settings(EXOCLAW_TOKEN=raw):
        before = communicator(f"/ws?token={raw}")
        await before.connect(timeout=3)
        assert await closed_with(before) == (4401, "token_invalid"), "the variable alone is no token"
        await database_sync_to_async(call_command)("bootstrap", stdout=io.StringIO(), stderr=io.StringIO())
        c = await connected(communicator(f"/ws?token={raw}"))
        assert await principal_of(c) == "token:EXOCLAW_TOKEN"
        assert "result" in await call(c, "plugin.list")
        await c.disconnect()
        await ApiToken.objects.filter(name="EXOCLAW_TOKEN").adelete()
        after = communicator(f"/ws?token={raw}")
        await after.connect(timeout=3)
        assert await closed_with(after) == (4401, "token_invalid"), "deleting its row revokes it"


async def test_a_superusers_session_cookie_authenticates_with_admin_scope(session_cookie):
    c = await connected(communicator(headers=[("Cookie", await session_cookie(superuser=True))]))
    assert (await principal_of(c)).startswith("user:")
    assert "result" in await call(c, "plugin.list")
    await c.disconnect()


async def test_other_staff_get_exactly_the_scopes_their_permissions_give(session_cookie):
    c = await connected(communicator(headers=[("Cookie", await session_cookie(permissions=["view_session"]))]))
    status = await call(c, "status")
    assert status["result"]["principal"].startswith("user:")
    assert "result" in await call(c, "sessions.list")
    assert error_of(await call(c, "sessions.reset", {"session_key": "agent:a:-:-:p"})) == (-32002, "missing_scope")
    assert error_of(await call(c, "plugin.list")) == (-32002, "missing_scope")
    await c.disconnect()
    plain = await connected(communicator(headers=[("Cookie", await session_cookie())]))
    assert error_of(await call(plain, "sessions.list")) == (-32002, "missing_scope")
    assert error_of(await call(plain, "chat.send", {"text": "hi"})) == (-32002, "missing_scope")
    await plain.disconnect()


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
    reply = await call(c, "sessions.reset", {"session_key": "agent:a:-:-:p"})
    assert error_of(reply) == (-32004, "no_session"), "chat reaches only its own conversations"
    assert "result" in await call(c, "agents.list")
    await c.disconnect()


async def test_a_token_with_no_scopes_may_only_call_unscoped_methods(make_token):
    c = await connected(communicator(f"/ws?token={await make_token([])}"))
    assert "result" in await call(c, "status")
    assert error_of(await call(c, "routing.resolve", {}))[0] == -32002
    await c.disconnect()


def browser(raw, origin, host="chat.example.com", scheme="wss", client=REMOTE):
    c = communicator(f"/ws?token={raw}", headers=[("Origin", origin), ("Host", host)], client=client)
    c.scope["scheme"] = scheme
    return c


async def test_a_browser_must_come_from_exactly_the_origin_it_connects_to(make_token):
    raw = await make_token()
    with override_settings(ALLOWED_HOSTS=["chat.example.com"], CSRF_TRUSTED_ORIGINS=["https://app.example.org"]):
        for origin in ("https://evil.example.net", "null", "https://chat.example.com.evil.net",
                       "http://chat.example.com", "https://chat.example.com:8443", "https://chat.example.com/x"):
            ok, code = await browser(raw, origin).connect(timeout=3)
            assert not ok, f"{origin} was let in"
        for origin in ("https://chat.example.com", "https://CHAT.example.com:443", "https://app.example.org"):
            c = await connected(browser(raw, origin))
            await c.disconnect()
        ok, _ = await browser(raw, "http://evil.example.net", host="evil.example.net", scheme="ws").connect(timeout=3)
        assert not ok, "a Host outside ALLOWED_HOSTS is no served origin"
        c = await connected(communicator(f"/ws?token={raw}"))
        await c.disconnect()


async def test_another_page_on_this_machine_gets_no_loopback_trust():
    with override_settings(EXOCLAW_BIND="127.0.0.1:7200"):
        ok, _ = await browser("", "http://localhost:9999", host="localhost:7200", scheme="ws",
                              client=LOOPBACK).connect(timeout=3)
        assert not ok, "a page on another port was let in"
        own = await connected(browser("", "http://localhost:7200", host="localhost:7200", scheme="ws",
                                      client=LOOPBACK))
        assert await principal_of(own) == "loopback", "exoclaw's own page keeps it"
        await own.disconnect()


@pytest.mark.parametrize("change", [{"GATEWAY_LOOPBACK_TRUST": False}, {"ALLOWED_HOSTS": ["*"]},
                                    {"ALLOWED_HOSTS": ["*"], "GATEWAY_LOOPBACK_TRUST": True}])
async def test_loopback_trust_is_a_setting_and_never_with_any_host_allowed(change):
    with override_settings(EXOCLAW_BIND="127.0.0.1:7200", **change):
        c = await connected(communicator(client=LOOPBACK))
        await assert_unauthenticated(c)
        await c.disconnect()
    with override_settings(EXOCLAW_BIND="0.0.0.0:7200", GATEWAY_LOOPBACK_TRUST=True):
        c = await connected(communicator(client=LOOPBACK))
        assert await principal_of(c) == "loopback", "an operator may turn it on for any bind"
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
        reply = await call(c, "auth", {"token": "exo_guess_guess_guess_guess_guess"})
        assert error_of(reply) == (-32003, "auth_throttled") and 55 <= reply["error"]["data"]["retry_after"] <= 60
        await assert_unauthenticated(c)
        assert "result" in await call(c, "ping")

        refused = communicator("/ws?token=exo_guess_guess_guess_guess_guess", client=("198.51.100.1", 2))
        await refused.connect(timeout=3)
        assert await closed_with(refused) == (4429, "auth_throttled")

        # Nobody holding a valid token is locked out by failures, not even from the same address.
        assert (await call(c, "auth", {"token": good}))["result"]["principal"] == "token:good"
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


PROXY = ("10.0.0.2", 40000)


def via_proxy(path, client_ip):
    return communicator(path, headers=[("X-Forwarded-For", f"203.0.113.99, {client_ip}")], client=PROXY)


async def test_behind_a_trusted_proxy_five_bad_tokens_from_one_client_do_not_throttle_another(make_token):
    good = await make_token(name="good")
    with override_settings(TRUSTED_PROXIES=["10.0.0.0/24"], GATEWAY_AUTH_FAILURES=5):
        for _ in range(5):
            bad = via_proxy("/ws?token=exo_guess_guess_guess_guess_guess", "198.51.100.7")
            await bad.connect(timeout=3)
            assert await closed_with(bad) == (4401, "token_invalid")
        throttled = via_proxy("/ws?token=exo_guess_guess_guess_guess_guess", "198.51.100.7")
        await throttled.connect(timeout=3)
        assert await closed_with(throttled) == (4429, "auth_throttled")
        other = await connected(via_proxy(f"/ws?token={good}", "198.51.100.8"))
        assert await principal_of(other) == "token:good"
        await other.disconnect()


async def test_repeated_forwarded_for_headers_are_one_list_so_the_proxys_own_line_counts():
    from exoclaw.proxies import scope_client_address

    # A proxy that adds a line of its own after the one the client wrote: the client's is not taken.
    scope = {"client": PROXY, "headers": [(b"x-forwarded-for", b"198.51.100.40"), (b"x-forwarded-for", b"198.51.100.41")]}
    with override_settings(TRUSTED_PROXIES=["10.0.0.0/24"]):
        assert scope_client_address(scope) == "198.51.100.41"


async def test_forwarded_headers_from_anyone_but_a_trusted_proxy_are_ignored():
    with override_settings(TRUSTED_PROXIES=["10.0.0.0/24"], GATEWAY_AUTH_FAILURES=2):
        for spoofed in ("198.51.100.20", "198.51.100.21", "198.51.100.22"):
            c = communicator("/ws?token=exo_guess_guess_guess_guess_guess",
                             headers=[("X-Forwarded-For", spoofed)], client=REMOTE)
            await c.connect(timeout=3)
            closing = await closed_with(c)
        assert closing == (4429, "auth_throttled"), "a client cannot escape the throttle by inventing addresses"


async def test_the_throttle_is_shared_through_redis(redis_url):
    # Another process (a second gateway) records the failures; this one refuses the next bad token.
    import subprocess
    import sys
    import uuid

    prefix = f"throttle-{uuid.uuid4().hex[:8]}"
    script = (
        "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'exoclaw.settings_test'; django.setup()\n"
        "from exoclaw.gateway.limits import failed_logins\n"
        "for _ in range(3): failed_logins().record_failure('198.51.100.30', window=60)\n"
    )
    env = {**__import__("os").environ, "REDIS_URL": redis_url, "REDIS_PREFIX": prefix}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    with override_settings(REDIS_URL=redis_url, REDIS_PREFIX=prefix, GATEWAY_AUTH_FAILURES=3):
        c = communicator("/ws?token=exo_guess_guess_guess_guess_guess", client=("198.51.100.30", 1))
        await c.connect(timeout=3)
        assert await closed_with(c) == (4429, "auth_throttled")


async def test_a_lone_surrogate_in_a_token_is_a_refused_login_that_counts(make_token):
    with override_settings(GATEWAY_AUTH_FAILURES=2):
        c = await connected(communicator(client=("198.51.100.40", 1)))
        for _ in range(2):
            reply = await send_raw(c, '{"jsonrpc": "2.0", "method": "auth", "params": {"token": "exo_\\ud800x"}, "id": 1}')
            assert error_of(reply) == (-32001, "token_invalid")
        reply = await send_raw(c, '{"jsonrpc": "2.0", "method": "auth", "params": {"token": "exo_\\ud800x"}, "id": 1}')
        assert error_of(reply) == (-32003, "auth_throttled")
        await c.disconnect()


@pytest.mark.parametrize("how", ["revoketoken", "disabled", "expired", "deleted"])
async def test_a_token_that_stops_being_valid_closes_its_open_connections_within_two_seconds(make_token, how):
    from datetime import timedelta

    from django.utils import timezone

    raw = await make_token(["chat"], name="leaving")
    c = await connected(communicator(f"/ws?token={raw}"))
    assert await principal_of(c) == "token:leaving"
    rows = ApiToken.objects.filter(name="leaving")
    if how == "revoketoken":
        await database_sync_to_async(call_command)("revoketoken", "leaving", stderr=io.StringIO())
    elif how == "disabled":
        await rows.aupdate(enabled=False)
    elif how == "expired":
        await rows.aupdate(expires_at=timezone.now() - timedelta(seconds=1))
    else:
        await rows.adelete()
    out = await c.receive_json_from(timeout=2)
    reason = {"revoketoken": "token_disabled", "disabled": "token_disabled", "expired": "token_expired",
              "deleted": "token_invalid"}[how]
    assert out["method"] == "gateway.closing" and (out["params"]["code"], out["params"]["reason"]) == (4401, reason)
    closed = await c.receive_output(timeout=2)
    assert closed["type"] == "websocket.close" and closed["code"] == 4401


async def test_admin_login_is_throttled_per_client_address(client, django_user_model):
    await database_sync_to_async(django_user_model.objects.create_superuser)("boss", "", "the-right-password-1")

    def attempt(password, address):
        return client.post("/admin/login/", {"username": "boss", "password": password, "next": "/admin/"},
                           REMOTE_ADDR=address)

    with override_settings(GATEWAY_AUTH_FAILURES=5, GATEWAY_AUTH_WINDOW=60):
        for _ in range(40):
            await database_sync_to_async(attempt)("wrong", "198.51.100.50")
        refused = await database_sync_to_async(attempt)("the-right-password-1", "198.51.100.50")
        assert refused.status_code == 200 and "Too many failed logins from your address" in refused.content.decode()
        allowed = await database_sync_to_async(attempt)("the-right-password-1", "198.51.100.51")
        assert allowed.status_code == 302 and allowed["Location"] == "/admin/"
