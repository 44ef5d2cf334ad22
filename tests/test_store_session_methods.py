"""The gateway's sessions.* methods over the process store: params checked, results JSON-ready."""

import json

import pytest

from agents.session_methods import METHODS, SCOPES, sessions_history, sessions_list, sessions_reset
from agents.store import InvalidInput, SessionNotFound
from tests.store_fixtures import a_run, a_run_sync

KEY = "agent:helper:webchat:-:alice"


@pytest.fixture
def alice(process_store):
    session, _ = a_run_sync(process_store, KEY, channel="webchat", peer="alice")
    for i in range(1, 6):
        process_store.sync.append_message(session["id"], "user", f"message {i} about invoices")
    return session


def test_every_method_has_a_scope():
    assert set(METHODS) == set(SCOPES)
    assert SCOPES["sessions.reset"] == "sessions:write" and SCOPES["sessions.list"] == "sessions:read"


@pytest.mark.asyncio
async def test_list_filters_and_pages(alice, process_store):
    await a_run(process_store, "agent:ops:slack:-:bob", "ops", channel="slack", peer="bob")
    page = await sessions_list({"agent": "helper"})
    assert [s["key"] for s in page["sessions"]] == [KEY] and page["total"] == 1
    json.dumps(page)
    first = await sessions_list({"limit": 1})
    second = await sessions_list({"limit": 1, "cursor": first["next_cursor"]})
    assert {first["sessions"][0]["key"], second["sessions"][0]["key"]} == {KEY, "agent:ops:slack:-:bob"}
    assert second["next_cursor"] is None
    assert [s["key"] for s in (await sessions_list({"q": "invoice"}))["sessions"]] == [KEY]


@pytest.mark.asyncio
async def test_history_pages_back_by_seq(alice):
    page = await sessions_history({"session_key": KEY, "limit": 2})
    assert [m["seq"] for m in page["messages"]] == [4, 5] and page["has_more"] is True
    older = await sessions_history({"session_key": KEY, "limit": 2, "before_seq": 4})
    assert [m["seq"] for m in older["messages"]] == [2, 3]
    assert isinstance(older["messages"][0]["created"], str)
    with pytest.raises(SessionNotFound):
        await sessions_history({"session_key": "agent:helper:webchat:-:nobody"})


@pytest.mark.asyncio
async def test_reset_starts_a_new_session_under_the_key(alice):
    result = await sessions_reset({"session_key": KEY})
    assert result["previous_session_id"] == alice["id"] and result["session"]["key"] == KEY
    assert (await sessions_history({"session_key": KEY}))["messages"] == []


@pytest.mark.asyncio
@pytest.mark.parametrize("method,params,message", [
    (sessions_list, {"limit": 0}, "limit must be an integer from 1 to 200"),
    (sessions_list, {"limit": "10"}, "limit must be an integer"),
    (sessions_list, {"agnet": "x"}, "unknown params: agnet"),
    (sessions_list, ["x"], "params must be an object"),
    (sessions_list, {"cursor": "???"}, "bad cursor"),
    (sessions_history, {}, "session_key is required"),
    (sessions_history, {"session_key": KEY, "before_seq": True}, "before_seq must be an integer"),
    (sessions_reset, {"session_key": 5}, "session_key must be a string"),
    (sessions_reset, {"session_key": "01ABC"}, "must be a session key"),
])
async def test_bad_params_are_refused_with_a_clear_message(process_store, method, params, message):
    with pytest.raises(InvalidInput, match=message):
        await method(params)
