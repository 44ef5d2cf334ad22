"""Reading the store back: history pages, listing with filters, search, reset, delete and prune."""

import datetime as dt

import pytest

from agents.store import DuplicateRun, InvalidInput, RunNotFound, SessionNotFound
from tests.store_fixtures import a_run_sync, run_surql


def seed(store, peers=("alice", "bob", "carol"), messages=3):
    """A webchat session per peer holding one finished run with `messages` user messages."""
    sessions = {}
    for peer in peers:
        s, run = a_run_sync(store, f"agent:helper:webchat:-:{peer}", channel="webchat", peer=peer, running=True)
        for i in range(messages):
            store.sync.append_message(s["id"], "user", f"{peer} asks question {i}", run_id=run["id"])
        store.sync.update_run(run["id"], status="done", stop_reason="end_turn")
        sessions[peer] = s
    return sessions


def backdate(store, session_id, days):
    run_surql(store, "UPDATE type::thing('session', $id) SET updated = time::now() - <duration> $age",
              {"id": session_id, "age": f"{days}d"})


def test_history_pages_backwards_by_seq(store):
    s = seed(store, peers=("alice",), messages=7)["alice"]
    page = store.sync.history(s["key"], limit=3)
    assert [m["seq"] for m in page["messages"]] == [5, 6, 7] and page["has_more"] is True
    page = store.sync.history(s["id"], limit=3, before_seq=page["messages"][0]["seq"])
    assert [m["seq"] for m in page["messages"]] == [2, 3, 4]
    page = store.sync.history(s["id"], limit=3, before_seq=2)
    assert [m["seq"] for m in page["messages"]] == [1] and page["has_more"] is False
    assert page["session"]["id"] == s["id"]
    assert [m["seq"] for m in store.sync.history(s["id"], limit=100)["messages"]] == list(range(1, 8))
    with pytest.raises(SessionNotFound):
        store.sync.history("agent:helper:webchat:-:nobody")


def test_llm_context_is_the_last_messages_role_and_content_only(store):
    s, _ = a_run_sync(store, "agent:a:-:-:ctx", "a")
    tool_use = {"type": "tool_use", "id": "tu_1", "name": "calc.add", "input": {"a": 1}}
    store.sync.append_message(s["id"], "user", "first")
    store.sync.append_message(s["id"], "assistant", [tool_use], tokens=3)
    store.sync.append_message(s["id"], "user", [{"type": "tool_result", "tool_use_id": "tu_1", "content": "1"}])
    store.sync.append_message(s["id"], "assistant", "half an answ", interrupted="aborted")
    full = store.sync.history(s["id"], limit=3)["messages"]
    got = store.sync.llm_context(s["id"], 3)
    assert got == {"count": 4, "messages": [{k: m[k] for k in ("seq", "role", "content")} for m in full]}
    assert store.sync.llm_context(s["id"], 10)["messages"][0]["content"] == [{"type": "text", "text": "first"}]
    assert [m["seq"] for m in store.sync.llm_context(s["id"], 3, after_seq=2)["messages"]] == [3, 4]
    assert store.sync.llm_context(s["id"], 3, after_seq=4) == {"count": 4, "messages": []}
    empty, _ = a_run_sync(store, "agent:a:-:-:empty", "a")
    assert store.sync.llm_context(empty["id"], 10) == {"count": 0, "messages": []}
    store.sync.delete(s["id"])
    assert store.sync.llm_context(s["id"], 3, after_seq=4) == {"count": None, "messages": []}


def test_first_user_message_titles_the_session(store):
    s, _ = a_run_sync(store, "agent:a:-:-:x", "a")
    store.sync.append_message(s["id"], "assistant", "Welcome!")
    store.sync.append_message(s["id"], "user", "Plan   my trip\nto Lisbon " + "please " * 20)
    store.sync.append_message(s["id"], "user", "second message")
    title = store.sync.get_session(s["id"])["title"]
    assert title.startswith("Plan my trip to Lisbon please") and title.endswith("…") and len(title) <= 80


def test_reset_starts_a_fresh_session_and_the_old_one_stays_browsable(store):
    old = seed(store, peers=("alice",))["alice"]
    new = store.sync.reset(old["key"])
    assert new["id"] != old["id"] and new["previous_id"] == old["id"] and new["message_count"] == 0
    assert store.sync.start_run(old["key"], "helper")[0]["id"] == new["id"], "the next message goes to the new one"
    assert store.sync.history(old["key"])["messages"] == []
    assert len(store.sync.history(old["id"])["messages"]) == 3
    assert store.sync.get_session(old["id"])["current"] is False
    listed = store.sync.list_sessions(peer="alice")
    assert {s["id"] for s in listed["items"]} == {old["id"], new["id"]}
    assert [s["id"] for s in store.sync.list_sessions(peer="alice", current=True)["items"]] == [new["id"]]
    with pytest.raises(SessionNotFound):
        store.sync.reset("agent:helper:webchat:-:nobody")


def test_list_filters_by_agent_channel_peer_status_and_dates(store):
    sessions = seed(store)
    _, run = a_run_sync(store, "agent:ops:slack:T1:dave", "ops", channel="slack", peer="dave", running=True)
    store.sync.update_run(run["id"], status="error", error="boom")
    backdate(store, sessions["carol"]["id"], 40)

    def ids(**kw):
        return {s["peer"] for s in store.sync.list_sessions(**kw)["items"]}

    assert ids(agent="helper") == {"alice", "bob", "carol"}
    assert ids(channel="slack") == {"dave"}
    assert ids(peer="bob") == {"bob"}
    assert ids(status="error") == {"dave"}
    assert ids(status="done", agent="helper") == {"alice", "bob", "carol"}
    now = dt.datetime.now(dt.timezone.utc)
    assert ids(since=now - dt.timedelta(days=30)) == {"alice", "bob", "dave"}
    assert ids(until=now - dt.timedelta(days=1)) == set()
    with pytest.raises(InvalidInput, match="status must be one of"):
        store.sync.list_sessions(status="sleeping")
    with pytest.raises(InvalidInput, match="sort must be one of"):
        store.sync.list_sessions(sort="id; DELETE session")


def test_list_sorts_and_pages_with_counts(store):
    for n in range(7):
        s, _ = a_run_sync(store, f"agent:a:-:-:p{n}", "a", peer=f"p{n}")
        for i in range(n):
            store.sync.append_message(s["id"], "user", "x")
    first = store.sync.list_sessions(sort="-message_count", limit=3)
    assert first["total"] == 7 and [s["message_count"] for s in first["items"]] == [6, 5, 4]
    second = store.sync.list_sessions(sort="-message_count", limit=3, cursor=first["next_cursor"])
    third = store.sync.list_sessions(sort="-message_count", limit=3, cursor=second["next_cursor"])
    assert [s["message_count"] for s in second["items"] + third["items"]] == [3, 2, 1, 0]
    assert third["next_cursor"] is None and third["offset"] == 6
    assert [s["peer"] for s in store.sync.list_sessions(sort="-updated", limit=2)["items"]] == ["p6", "p5"]
    assert [s["peer"] for s in store.sync.list_sessions(sort="created", limit=2)["items"]] == ["p0", "p1"]
    with pytest.raises(InvalidInput, match="bad cursor"):
        store.sync.list_sessions(cursor="garbage!")


def test_full_text_search_finds_stemmed_words_and_marks_them(store):
    s, _ = a_run_sync(store, "agent:a:-:-:x", "a", peer="x")
    store.sync.append_message(s["id"], "user", "The deployment was running slowly on Tuesday")
    store.sync.append_message(s["id"], "assistant", [{"type": "tool_use", "id": "t", "name": "weather", "input": {}}])
    store.sync.append_message(s["id"], "user", [{"type": "tool_result", "tool_use_id": "t", "content": "Sunny in Lisbon"}])
    seed(store, peers=("bob",))
    hits = store.sync.search("runs")
    assert [(h["session_id"], h["seq"]) for h in hits] == [(s["id"], 1)]
    assert ("running", True) in hits[0]["snippet"] and hits[0]["session_key"] == "agent:a:-:-:x"
    assert [h["seq"] for h in store.sync.search("lisbon")] == [3]
    assert [h["seq"] for h in store.sync.search("weather")] == [2]
    assert store.sync.search("nothing-like-this") == []
    assert [h["seq"] for h in store.sync.search("Lisbon?!")] == [3], "punctuation in the query is ignored"
    assert store.sync.search("?") == []
    assert {x["peer"] for x in store.sync.list_sessions(q="deployments")["items"]} == {"x"}
    assert {x["peer"] for x in store.sync.list_sessions(q="BOB")["items"]} == {"bob"}, "q also matches the key"
    assert store.sync.search("lisbon", agent="other") == []


def test_delete_removes_a_session_with_its_messages_and_runs(store):
    sessions = seed(store, peers=("alice", "bob"))
    alice = sessions["alice"]
    _, run = a_run_sync(store, alice["key"], idempotency_key="k")
    with pytest.raises(DuplicateRun):
        store.sync.start_run(alice["key"], "helper", idempotency_key="k")
    assert store.sync.delete(alice["id"]) == {"sessions": 1, "messages": 3, "runs": 2}
    with pytest.raises(SessionNotFound):
        store.sync.get_session(alice["id"])
    with pytest.raises(RunNotFound):
        store.sync.get_run(run["id"])
    assert store.sync.current_session(alice["key"]) is None
    assert store.sync.search("alice") == []
    assert len(store.sync.history(sessions["bob"]["id"], limit=10)["messages"]) == 3
    with pytest.raises(SessionNotFound):
        store.sync.delete(alice["id"])
    fresh, again = store.sync.start_run(alice["key"], "helper", idempotency_key="k")
    assert fresh["id"] != alice["id"] and again["id"] != run["id"], "the idempotency key went with the session"


def test_prune_deletes_only_sessions_idle_longer_than_the_age(store):
    sessions = seed(store)
    a_run_sync(store, sessions["alice"]["key"])
    backdate(store, sessions["alice"]["id"], 45)
    backdate(store, sessions["bob"]["id"], 31)
    expected = {"sessions": 2, "messages": 6, "runs": 3}
    assert store.sync.prune("30d", dry_run=True) == expected
    assert store.sync.list_sessions()["total"] == 3, "a dry run deletes nothing"
    assert store.sync.prune(dt.timedelta(days=30)) == expected
    assert [s["peer"] for s in store.sync.list_sessions()["items"]] == ["carol"]
    assert store.sync.prune("30d") == {"sessions": 0, "messages": 0, "runs": 0}
    with pytest.raises(InvalidInput, match="not a duration"):
        store.sync.prune("thirty days")

