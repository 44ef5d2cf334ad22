from agents.runtime.persist import _sendable, trim_context


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
