"""The gateway over the real ASGI stack (WebsocketCommunicator): every method, every error code, the
limits, notifications in both directions."""

import asyncio
import json
import logging

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from django.test import override_settings

from agents.models import Agent
from exoclaw.gateway import errors
from exoclaw.gateway.health import register_health_check
from exoclaw.gateway.notify import group_name, notify_channel, notify_connection, notify_group
from exoclaw.gateway.registry import Param
from exoclaw.gateway.stats import run_finished, run_started
from routing.models import Binding
from routing.resolver import clear_cache
from sandbox.models import CapabilityGrant, HttpSecret, Plugin
from tests.gateway_support import (
    call,
    communicator,
    connected,
    error_of,
    fresh_throttle,  # noqa: F401
    make_token,  # noqa: F401
    probe_methods,  # noqa: F401
    request,
    send_raw,
)

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fresh_routes():
    # Flushing the test database between tests sends no signals, so the resolver's cache would
    # remember the previous test's bindings.
    clear_cache()


@pytest_asyncio.fixture
async def admin(make_token):
    c = await connected(communicator(f"/ws?token={await make_token(['admin'])}"))
    yield c
    await c.disconnect()


@pytest_asyncio.fixture
async def admin_with(make_token):
    """Open an admin connection under other limits (they are read when a connection opens)."""
    opened = []

    async def open_with(**limits):
        with override_settings(**limits):
            opened.append(await connected(communicator(f"/ws?token={await make_token(['admin'])}")))
        return opened[-1]

    yield open_with
    for c in opened:
        await c.disconnect()


async def assert_usable(c, rid="after"):
    assert (await call(c, "ping", rid=rid))["result"] == "pong"


async def test_ping_answers_pong_even_before_authentication():
    c = await connected(communicator())
    assert await call(c, "ping", rid="p") == {"jsonrpc": "2.0", "result": "pong", "id": "p"}
    await c.disconnect()


async def test_status_reports_version_uptime_connections_runs_layer_and_store(admin):
    status = (await call(admin, "status"))["result"]
    assert status["version"] == "0.1.0"
    assert status["uptime_s"] >= 0
    assert status["connections"] >= 1
    assert status["channel_layer"] == "in-memory"
    assert status["store"]["scheme"] == "mem"
    assert status["store"]["health"].startswith("ok (embedded, "), status["store"]
    run_started()
    try:
        assert (await call(admin, "status"))["result"]["active_runs"] == status["active_runs"] + 1
    finally:
        run_finished()


async def test_status_reports_the_registered_store_health_check_and_its_failures(admin):
    async def healthy():
        return "ok"

    async def broken():
        raise ConnectionError("store down")

    try:
        register_health_check("store", healthy)
        assert (await call(admin, "status"))["result"]["store"]["health"] == "ok"
        register_health_check("store", broken)
        assert (await call(admin, "status"))["result"]["store"]["health"] == "error: ConnectionError"
    finally:
        # The agents app's own check, as its rpc module registered it, for the tests that follow.
        from agents.health import store_health

        register_health_check("store", store_health)


@database_sync_to_async
def make_world():
    demo = Agent.objects.create(name="demo", provider="echo", tools=["*"])
    support = Agent.objects.create(name="support", provider="openai", model="gpt-4o", enabled=False)
    Binding.objects.create(agent=demo)
    Binding.objects.create(agent=support, channel="telegram", peer="alice")
    Binding.objects.create(agent=demo, channel="telegram")
    weather = Plugin.objects.create(
        name="weather",
        wasm_path="/srv/weather.wasm",
        abi="exoclaw",
        description="Forecasts",
        tools=[{"name": "forecast", "description": "d", "input_schema": {"type": "object"}}],
    )
    grant = CapabilityGrant.objects.create(
        plugin=weather,
        allowed_hosts=["api.weather.example"],
        allowed_paths=[{"host": "/srv/data", "guest": "/data", "read_only": True}],
        config={"units": "metric-secretish"},
        secret_env={"api_key": "WEATHER_API_KEY"},
    )
    HttpSecret.objects.create(grant=grant, host="https://api.weather.example", query="appid", secret_env="WEATHER_HTTP_KEY")
    CapabilityGrant.objects.create(plugin=weather, agent=demo, timeout_ms=100)


async def test_agents_list_lists_every_agent(admin):
    await make_world()
    agents = (await call(admin, "agents.list"))["result"]
    assert agents == [
        {"name": "demo", "provider": "echo", "model": "", "tools": ["*"], "busy_policy": "queue", "enabled": True},
        {"name": "support", "provider": "openai", "model": "gpt-4o", "tools": [], "busy_policy": "queue", "enabled": False},
    ]


async def test_plugin_list_shows_tools_and_grants_but_no_config_or_secret_values(admin):
    await make_world()
    (weather,) = (await call(admin, "plugin.list"))["result"]
    assert weather["name"] == "weather" and weather["abi"] == "exoclaw" and weather["enabled"]
    assert weather["tools"][0]["input_schema"] == {"type": "object"}
    default, for_demo = sorted(weather["grants"], key=lambda g: g["agent"] or "")
    assert default["agent"] is None and for_demo["agent"] == "demo" and for_demo["timeout_ms"] == 100
    assert default["hosts"] == ["api.weather.example"]
    assert default["paths"] == [{"host": "/srv/data", "guest": "/data", "read_only": True}]
    assert default["secret_keys"] == ["api_key"] and default["config_keys"] == ["units"]
    assert default["http_secret_hosts"] == ["https://api.weather.example"] and for_demo["http_secret_hosts"] == []
    assert {"memory_mb", "timeout_ms", "max_concurrency", "max_http_response_bytes"} <= set(default)
    text = json.dumps(weather)
    assert "metric-secretish" not in text and "WEATHER_API_KEY" not in text and "WEATHER_HTTP_KEY" not in text


async def test_routing_resolve_returns_agent_binding_reason_and_session_key(admin):
    await make_world()
    route = (await call(admin, "routing.resolve", {"channel": "telegram", "peer": "bob"}))["result"]
    assert route["agent"] == "demo" and route["level"] == "channel"
    assert route["session_key"] == "agent:demo:telegram:-:bob"
    assert "channel level" in route["reason"] and isinstance(route["binding"], int)
    fallback = (await call(admin, "routing.resolve", {}))["result"]
    assert fallback["level"] == "default"


async def test_routing_resolve_without_any_binding_is_not_found(admin):
    assert error_of(await call(admin, "routing.resolve", {"channel": "x"})) == (-32004, "no_route")


async def test_routing_resolve_names_the_bad_param(admin):
    reply = await call(admin, "routing.resolve", {"channel": 5})
    assert error_of(reply) == (-32602, "invalid_params")
    assert reply["error"]["data"]["param"] == "channel" and "must be a string" in reply["error"]["message"]
    reply = await call(admin, "routing.resolve", {"chanel": "x"})
    assert reply["error"]["data"]["param"] == "chanel"
    await assert_usable(admin)


@pytest.mark.parametrize(
    "method,scope,other",
    [
        ("chat.send", "chat", "sessions:write"),
        ("chat.abort", "chat or sessions:write", "sessions:read"),
        ("chat.subscribe", "chat or sessions:read", "sessions:write"),
        ("sessions.list", "chat or sessions:read", "sessions:write"),
        ("sessions.history", "chat or sessions:read", "sessions:write"),
        ("sessions.reset", "chat or sessions:write", "sessions:read"),
    ],
)
async def test_chat_and_session_methods_are_behind_their_scope(make_token, method, scope, other):
    # With `chat`, a principal reaches its own conversations; with sessions:*, everyone's.
    c = await connected(communicator(f"/ws?token={await make_token([other])}"))
    reply = await call(c, method)
    assert error_of(reply) == (-32002, "missing_scope") and reply["error"]["data"]["required"] == scope
    await c.disconnect()


async def test_an_app_adds_a_method_with_one_decorator(admin):
    from exoclaw.gateway.registry import registry

    @registry.method("probe.echo", scope="chat", params={"text": Param(str, required=True)})
    async def echo(ctx, *, text):
        return {"echo": text, "principal": ctx.principal.name}

    try:
        reply = await call(admin, "probe.echo", {"text": "hi"})
        assert reply["result"]["echo"] == "hi" and reply["result"]["principal"].startswith("token:")
    finally:
        registry.methods.pop("probe.echo")


async def test_each_app_registers_its_own_methods_and_the_gateway_only_its_own():
    from exoclaw.gateway.registry import registry

    owners = {name: m.handler.__module__ for name, m in registry.methods.items()}
    assert owners == {
        "ping": "exoclaw.gateway.methods", "auth": "exoclaw.gateway.methods", "status": "exoclaw.gateway.methods",
        **{n: "agents.rpc" for n in ("chat.send", "chat.abort", "chat.subscribe", "sessions.list",
                                     "sessions.history", "sessions.reset", "sessions.follow", "agents.list")},
        "sessions.prune": "agents.maintenance_rpc", "store.migrate": "agents.maintenance_rpc",
        "plugin.list": "sandbox.rpc", "routing.resolve": "routing.rpc",
    }


async def test_parse_error_then_the_connection_is_still_usable(admin):
    reply = await send_raw(admin, '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]')
    assert reply["id"] is None and error_of(reply) == (-32700, "parse_error")
    await assert_usable(admin)


async def test_binary_frames_are_read_as_utf8_json(admin):
    await admin.send_to(bytes_data=json.dumps(request("ping", rid=2)).encode())
    assert await admin.receive_json_from() == {"jsonrpc": "2.0", "result": "pong", "id": 2}
    await admin.send_to(bytes_data=b"\xff\x00")
    assert error_of(await admin.receive_json_from()) == (-32700, "not_utf8")


async def test_invalid_request_examples_from_the_spec(admin):
    reply = await send_raw(admin, '{"jsonrpc": "2.0", "method": 1, "params": "bar"}')
    assert reply["id"] is None and error_of(reply) == (-32600, "invalid_request")
    reply = await send_raw(admin, "[]")
    assert isinstance(reply, dict) and error_of(reply) == (-32600, "empty_batch")
    reply = await send_raw(admin, "[1]")
    assert isinstance(reply, list) and len(reply) == 1 and error_of(reply[0]) == (-32600, "invalid_request")
    reply = await send_raw(admin, "[1,2,3]")
    assert [error_of(r) for r in reply] == [(-32600, "invalid_request")] * 3
    await assert_usable(admin)


async def test_unknown_method_is_method_not_found(admin):
    reply = await call(admin, "foobar", rid="1")
    assert reply["id"] == "1" and error_of(reply) == (-32601, "method_not_found")


async def test_a_mixed_batch_is_answered_as_an_array_without_the_notifications(admin):
    batch = [
        request("ping", rid="1"),
        {"jsonrpc": "2.0", "method": "ping", "params": []},
        request("foobar", rid="2"),
        {"foo": "boo"},
        request("routing.resolve", {"channel": 1}, rid="5"),
        {"jsonrpc": "2.0", "method": "foobar"},
    ]
    replies = await send_raw(admin, json.dumps(batch))
    by_id = {r["id"]: r for r in replies}
    assert len(replies) == 4
    assert by_id["1"]["result"] == "pong"
    assert error_of(by_id["2"])[0] == -32601 and error_of(by_id["5"])[0] == -32602
    assert error_of(by_id[None])[0] == -32600


async def test_notifications_and_all_notification_batches_get_no_answer(admin):
    await admin.send_json_to({"jsonrpc": "2.0", "method": "ping"})
    await admin.send_json_to({"jsonrpc": "2.0", "method": "no.such.method"})
    await admin.send_json_to([{"jsonrpc": "2.0", "method": "ping"}, {"jsonrpc": "2.0", "method": "status"}])
    # Frames are handled in order, so if any of those had been answered it would arrive first.
    assert (await call(admin, "ping", rid="next"))["result"] == "pong"
    assert await admin.receive_nothing(timeout=0.05)


async def test_an_exception_in_a_method_is_an_internal_error_without_details(admin, probe_methods, caplog):
    async def explode(ctx):
        raise RuntimeError("database password is hunter2")

    probe_methods("probe.explode", explode)
    with caplog.at_level(logging.ERROR, logger="exoclaw.gateway.frames"):
        reply = await call(admin, "probe.explode")
    assert error_of(reply) == (-32603, "internal_error")
    assert "hunter2" not in json.dumps(reply)
    assert "hunter2" in caplog.text and "probe.explode" in caplog.text
    await assert_usable(admin)


async def test_a_result_that_is_not_json_is_an_internal_error(admin, probe_methods):
    async def unserialisable(ctx):
        return {"x": object()}

    probe_methods("probe.object", unserialisable)
    assert error_of(await call(admin, "probe.object")) == (-32603, "internal_error")


async def test_application_errors_raised_by_methods_keep_their_code_and_reason(admin, probe_methods):
    async def busy(ctx):
        raise errors.SessionBusy("session agent:demo:-:-:- has a run", session="agent:demo:-:-:-")

    probe_methods("probe.busy", busy)
    reply = await call(admin, "probe.busy")
    assert error_of(reply) == (-32005, "session_busy") and reply["error"]["data"]["session"] == "agent:demo:-:-:-"


async def test_unauthenticated_calls_are_unauthorized_until_auth():
    c = await connected(communicator())
    assert error_of(await call(c, "status")) == (-32001, "auth_required")
    await c.disconnect()


async def test_a_frame_over_the_size_limit_is_refused_and_the_connection_stays_usable(admin_with):
    c = await admin_with(GATEWAY_MAX_FRAME_BYTES=200)
    reply = await send_raw(c, json.dumps(request("ping", {"pad": "x" * 300})))
    assert reply["id"] is None and error_of(reply) == (-32006, "frame_too_large")
    assert reply["error"]["data"]["limit"] == 200
    await assert_usable(c)


async def test_a_batch_over_the_length_limit_is_one_error(admin_with):
    c = await admin_with(GATEWAY_MAX_BATCH=3)
    reply = await send_raw(c, json.dumps([request("ping", rid=i) for i in range(4)]))
    assert isinstance(reply, dict) and error_of(reply) == (-32006, "batch_too_long")
    replies = await send_raw(c, json.dumps([request("ping", rid=i) for i in range(3)]))
    assert sorted(r["id"] for r in replies) == [0, 1, 2]


async def test_nesting_over_the_depth_limit_is_refused(admin_with):
    c = await admin_with(GATEWAY_MAX_DEPTH=5)
    deep = request("routing.resolve", {"channel": [[[[["x"]]]]]})
    assert error_of(await send_raw(c, json.dumps(deep))) == (-32006, "too_deep")
    very_deep = "[" * 50_000 + "]" * 50_000
    assert error_of(await send_raw(c, very_deep)) == (-32006, "too_deep")
    await assert_usable(c)


async def test_requests_over_the_rate_limit_are_refused_with_retry_after(admin_with):
    c = await admin_with(GATEWAY_RATE=20, GATEWAY_BURST=3)
    replies = await send_raw(c, json.dumps([request("ping", rid=i) for i in range(5)]))
    assert [("result" in r) for r in replies] == [True, True, True, False, False]
    code, reason = error_of(replies[3])
    retry_after = replies[3]["error"]["data"]["retry_after"]
    assert (code, reason) == (-32003, "rate_limited") and 0 < retry_after <= 0.05
    # The bucket refills at its rate: after the advertised wait the connection answers again.
    await asyncio.sleep(retry_after)
    await assert_usable(c)


async def test_runs_over_the_per_connection_limit_are_refused(admin_with, probe_methods):
    c = await admin_with(GATEWAY_MAX_RUNS=1)
    slots = []

    async def start(ctx):
        slots.append(ctx.claim_run())
        return ctx.runs

    async def finish(ctx):
        slots.pop().release()
        return ctx.runs

    probe_methods("probe.start", start)
    probe_methods("probe.finish", finish)
    assert (await call(c, "probe.start"))["result"] == 1
    reply = await call(c, "probe.start")
    assert error_of(reply) == (-32008, "too_many_runs") and reply["error"]["data"]["limit"] == 1
    assert (await call(c, "probe.finish"))["result"] == 0
    assert (await call(c, "probe.start"))["result"] == 1


async def test_a_gateway_notify_message_reaches_the_connection_as_a_notification(admin, probe_methods):
    async def where(ctx):
        await ctx.join(group_name("session", "agent:demo:webchat:-:alice"))
        return ctx.channel_name

    probe_methods("probe.where", where)
    channel = (await call(admin, "probe.where"))["result"]
    await notify_channel(channel, "chat.event", {"run": "r1", "delta": "Hel"})
    assert await admin.receive_json_from() == {"jsonrpc": "2.0", "method": "chat.event", "params": {"run": "r1", "delta": "Hel"}}
    await notify_group(group_name("session", "agent:demo:webchat:-:alice"), "chat.event", {"run": "r1", "delta": "lo"})
    assert (await admin.receive_json_from())["params"]["delta"] == "lo"
    connection = (await call(admin, "status"))["result"]["connection"]
    await notify_connection(connection, "chat.event", {"run": "r1", "delta": "!"})
    assert (await admin.receive_json_from())["params"]["delta"] == "!"


async def test_ctx_notify_and_on_close_callbacks(make_token, probe_methods):
    closed = asyncio.Event()

    async def watch(ctx):
        ctx.on_close(closed.set)
        await ctx.notify("chat.event", {"n": 1})
        return "watching"

    probe_methods("probe.watch", watch)
    c = await connected(communicator(f"/ws?token={await make_token(['admin'])}"))
    await c.send_json_to(request("probe.watch"))
    assert await c.receive_json_from() == {"jsonrpc": "2.0", "method": "chat.event", "params": {"n": 1}}
    assert (await c.receive_json_from())["result"] == "watching"
    await c.disconnect()
    await asyncio.wait_for(closed.wait(), 3)
