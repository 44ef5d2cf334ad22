import asyncio

import pytest

from agents.runtime import persist
from agents.runtime.persist import _sendable, trim_context
from tests.store_fixtures import a_run


def user(text):
    return {"role": "user", "content": [{"type": "text", "text": text}]}


def test_context_never_starts_with_an_assistant_turn_or_orphaned_tool_results():
    orphan = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "x", "is_error": False}]}
    assistant = {"role": "assistant", "content": [{"type": "text", "text": "hi"}]}
    assert trim_context([assistant, orphan, user("q"), assistant]) == [user("q"), assistant]
    assert trim_context([assistant]) == []


def test_empty_text_blocks_and_system_messages_are_not_sent_to_the_llm():
    lost = {"role": "assistant", "content": [{"type": "text", "text": ""}]}
    system = {"role": "system", "content": [{"type": "text", "text": "note"}]}
    assert _sendable([user("q"), lost, system]) == [user("q")]


@pytest.mark.asyncio
async def test_a_sessions_context_stays_what_the_store_holds_across_runs_and_other_writers(process_store):
    session, _ = await a_run(process_store, "agent:a:-:-:ctx", "a")
    payload = {"session_id": session["id"]}

    async def expected(n):
        return trim_context(_sendable(
            [{"role": m["role"], "content": m["content"]}
             for m in (await process_store.history(session["id"], limit=n))["messages"]]))

    assert await persist.context(payload, 4) == []
    for i in range(7):
        # A run's messages, or another process's: the context read next sees them either way.
        await process_store.append_message(session["id"], "user", f"question {i}")
        await process_store.append_message(session["id"], "assistant", f"answer {i}")
        assert await persist.context(payload, 4) == await expected(4), f"after {i + 1} exchanges"
    for _ in range(3):  # more new messages than the window holds
        await process_store.append_message(session["id"], "user", "again")
    assert await persist.context(payload, 4) == await expected(4)
    assert await persist.context(payload, 10) == await expected(10), "a larger window reads the older messages too"
    assert await persist.context(payload, 3) == await expected(3)
    await process_store.delete(session["id"])
    assert await persist.context(payload, 3) == []


@pytest.mark.asyncio
async def test_the_context_cache_keeps_only_recent_sessions(process_store, monkeypatch):
    monkeypatch.setattr(persist, "RECENT_SESSIONS", 2)
    sessions = [(await a_run(process_store, f"agent:a:-:-:p{i}", "a"))[0] for i in range(4)]
    for s in sessions:
        await process_store.append_message(s["id"], "user", "hi")
        assert await persist.context({"session_id": s["id"]}, 5) == [user("hi")]
    assert list(persist._recent)[-2:] == [sessions[2]["id"], sessions[3]["id"]]
    assert sessions[0]["id"] not in persist._recent and len(persist._recent) <= 2


@pytest.mark.asyncio
async def test_the_context_cache_is_bounded_by_size_too(process_store, monkeypatch):
    monkeypatch.setattr(persist, "RECENT_BYTES", 3000)
    big = "x" * 1000
    sessions = [(await a_run(process_store, f"agent:a:-:-:big{i}", "a"))[0] for i in range(3)]
    for s in sessions:
        await process_store.append_message(s["id"], "user", big)
        assert await persist.context({"session_id": s["id"]}, 5) == [user(big)]
    # Each context is a little over 1,000 bytes: the oldest had to go to stay under 3,000.
    assert sessions[0]["id"] not in persist._recent and sessions[2]["id"] in persist._recent
    assert persist._recent_bytes == sum(sum(entry[2]) for entry in persist._recent.values()) <= 3000
    huge, _ = await a_run(process_store, "agent:a:-:-:huge", "a")
    await process_store.append_message(huge["id"], "user", "y" * 5000)
    assert await persist.context({"session_id": huge["id"]}, 5) == [user("y" * 5000)]
    assert huge["id"] not in persist._recent and persist._recent_bytes <= 3000


@pytest.mark.asyncio
async def test_two_reads_of_one_session_at_once_keep_the_size_count_true(process_store):
    session, _ = await a_run(process_store, "agent:a:-:-:twice", "a")
    await process_store.append_message(session["id"], "user", "z" * 500)
    payload = {"session_id": session["id"]}
    first, second = await asyncio.gather(persist.context(payload, 5), persist.context(payload, 5))
    assert first == second == [user("z" * 500)]
    assert persist._recent_bytes == sum(sum(entry[2]) for entry in persist._recent.values())
