"""The gateway's sessions.* methods over the process store: params checked where declared, results JSON-ready."""

import pytest
import pytest_asyncio

from exoclaw.gateway.registry import registry

KEY = "agent:helper:webchat:-:alice"

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_layer")]


@pytest_asyncio.fixture
async def alice(process_store):
    session, run = await process_store.start_run(KEY, "helper", channel="webchat", peer="alice")
    for i in range(1, 6):
        await process_store.append_message(session["id"], "user", f"message {i} about invoices", run_id=run["id"])
    return session


async def test_every_sessions_method_takes_chat_for_ones_own_and_a_sessions_scope_for_all():
    names = ("sessions.list", "sessions.history", "sessions.follow", "sessions.reset")
    scopes = {name: registry.get(name).scope for name in names}
    assert scopes == {"sessions.list": ("chat", "sessions:read"), "sessions.history": ("chat", "sessions:read"),
                      "sessions.follow": ("chat", "sessions:read"), "sessions.reset": ("chat", "sessions:write")}


async def test_list_filters_and_pages(alice, process_store, connect):
    await process_store.start_run("agent:ops:slack:-:bob", "ops", channel="slack", peer="bob")
    client = await connect(scopes=("sessions:read",))
    page = await client.result("sessions.list", {"agent": "helper"})
    assert [s["key"] for s in page["sessions"]] == [KEY] and page["total"] == 1
    first = await client.result("sessions.list", {"limit": 1})
    second = await client.result("sessions.list", {"limit": 1, "cursor": first["next_cursor"]})
    assert {first["sessions"][0]["key"], second["sessions"][0]["key"]} == {KEY, "agent:ops:slack:-:bob"}
    assert second["next_cursor"] is None
    assert [s["key"] for s in (await client.result("sessions.list", {"q": "invoice"}))["sessions"]] == [KEY]


async def test_history_pages_back_by_seq(alice, connect):
    client = await connect(scopes=("sessions:read",))
    page = await client.result("sessions.history", {"session_key": KEY, "limit": 2})
    assert [m["seq"] for m in page["messages"]] == [4, 5] and page["has_more"] is True
    older = await client.result("sessions.history", {"session_key": KEY, "limit": 2, "before_seq": 4})
    assert [m["seq"] for m in older["messages"]] == [2, 3]
    assert isinstance(older["messages"][0]["created"], str)
    missing = await client.call("sessions.history", {"session_key": "agent:helper:webchat:-:nobody"})
    assert (missing["error"]["code"], missing["error"]["data"]["reason"]) == (-32004, "no_session")


async def test_reset_starts_a_new_session_under_the_key(alice, connect):
    client = await connect(scopes=("sessions:read", "sessions:write"))
    result = await client.result("sessions.reset", {"session_key": KEY})
    assert result["previous_session_id"] == alice["id"] and result["session"]["key"] == KEY
    assert (await client.result("sessions.history", {"session_key": KEY}))["messages"] == []


@pytest.mark.parametrize("method,params,param,message", [
    ("sessions.list", {"limit": 0}, "limit", "'limit' must be from 1 to 200"),
    ("sessions.list", {"limit": "10"}, "limit", "'limit' must be an integer"),
    ("sessions.list", {"agnet": "x"}, "agnet", "is not a parameter of sessions.list"),
    ("sessions.list", ["x"], "params", "must be an object"),
    ("sessions.list", {"cursor": "???"}, "params", "bad cursor"),
    ("sessions.history", {}, "session_key", "'session_key' is required"),
    ("sessions.history", {"session_key": KEY, "before_seq": True}, "before_seq", "'before_seq' must be an integer"),
    ("sessions.history", {"session_key": KEY, "before_seq": 2**63}, "before_seq", "must be from 1 to"),
    ("sessions.reset", {"session_key": 5}, "session_key", "'session_key' must be a string"),
    ("sessions.reset", {"session_key": "01ABC"}, "session_key", "must be a session key"),
])
async def test_bad_params_are_refused_with_a_clear_message(process_store, connect, method, params, param, message):
    client = await connect(scopes=("sessions:read", "sessions:write"))
    answer = await client.call(method, params)
    error = answer["error"]
    assert (error["code"], error["data"]["param"]) == (-32602, param), error
    assert message in error["message"], error
