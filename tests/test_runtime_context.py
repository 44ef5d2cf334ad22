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
async def test_a_sessions_context_is_what_the_store_holds_across_runs_and_other_writers(process_store):
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
