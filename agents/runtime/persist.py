"""What a run reads from and writes to the session store."""

import json
from collections import OrderedDict

from agents.store import InvalidInput, get_store

OUTCOMES = {"timeout": "timeout", "cancelled": "cancelled", "not_allowed": "denied", "denied": "denied"}


def trim_context(messages: list[dict]) -> list[dict]:
    """Drop leading messages that cannot start a conversation for a provider: an assistant turn, or
    tool results whose tool calls fell outside the context window."""
    start = 0
    while start < len(messages) and (
        messages[start]["role"] != "user" or any(b.get("type") == "tool_result" for b in messages[start]["content"])
    ):
        start += 1
    return messages[start:]


def _sendable(rows: list[dict]) -> list[dict]:
    # Providers refuse empty text blocks; a run that was lost leaves an empty, marked message.
    out = []
    for r in rows:
        blocks = [b for b in r["content"] if b.get("type") != "text" or b.get("text")]
        if r["role"] != "system" and blocks:
            out.append({"role": r["role"], "content": blocks})
    return out


# The last messages of the sessions this process ran lately, each as (n, its last n messages, their
# sizes). A message never changes once written and a session's messages are only ever appended
# (deleting a session deletes them all, and a session id is never reused), so the next run of a
# session reads only what came after them, usually the previous run's few messages, instead of
# decoding its whole context again (about 1.5 ms at 50 messages). The store's message count is read
# every time, so messages written by other processes are never missed. Tool results can be large
# (up to a grant's max_output_bytes each), so the cache is bounded by size as well as by sessions.
RECENT_SESSIONS = 256
RECENT_BYTES = 64 * 1024 * 1024
_recent: "OrderedDict[str, tuple[int, list[dict], list[int]]]" = OrderedDict()
_recent_bytes = 0


def _forget(session_id: str) -> tuple[int, list[dict], list[int]] | None:
    global _recent_bytes
    entry = _recent.pop(session_id, None)
    if entry is not None:
        _recent_bytes -= sum(entry[2])
    return entry


async def context(payload: dict, n: int) -> list[dict]:
    global _recent_bytes
    session_id = payload["session_id"]
    held_n, held, sizes = _forget(session_id) or (n, [], [])
    if held_n != n:
        held, sizes = [], []
    got = await get_store().llm_context(session_id, n, after_seq=held[-1]["seq"] if held else 0)
    if got["count"] is None:
        return []
    # Contiguous: what was read starts right after `held`, or is n messages on its own.
    rows = (held + got["messages"])[-n:]
    sizes = (sizes + [len(json.dumps(m["content"])) for m in got["messages"]])[-n:]
    # Another run of this session in this process may have stored its entry while this one read.
    _forget(session_id)
    _recent[session_id] = (n, rows, sizes)
    _recent_bytes += sum(sizes)
    while _recent and (len(_recent) > RECENT_SESSIONS or _recent_bytes > RECENT_BYTES):
        _forget(next(iter(_recent)))
    return trim_context(_sendable(rows))


def given_context(messages: list[dict], n: int) -> tuple[list[str], list[dict]]:
    """A context its caller gave the run (`service.start(context=...)`): its system texts, and its
    last `n` other messages as the tool loop takes them."""
    system = [m["content"] for m in messages if m["role"] == "system" and m["content"].strip()]
    rows = [{"role": m["role"], "content": [{"type": "text", "text": m["content"]}]}
            for m in messages if m["role"] != "system"]
    return system, trim_context(_sendable(rows[-n:] if n else []))


async def context_for(payload: dict, n: int) -> tuple[list[str], list[dict]]:
    """What the run starts from: system texts to add to the agent's prompt, and the messages before
    its own: those its caller gave, or else the session's last `n` stored ones."""
    if "context" in payload:
        return given_context(payload["context"], n)
    return [], await context(payload, n)


async def begin_run(payload: dict, user_message: dict) -> None:
    await get_store().update_run(payload["run_id"], status="running")
    await add_message(payload, user_message)


async def add_message(payload: dict, message: dict, interrupted: str | None = None) -> int:
    return await get_store().append_message(
        payload["session_id"], message["role"], message["content"], run_id=payload["run_id"], interrupted=interrupted
    )


def outcome_of(call: dict) -> str:
    if not call["is_error"]:
        return "ok"
    return OUTCOMES.get(call["error_kind"] or "", "error")


async def finish_run(payload: dict, status: str, *, stop_reason, usage: dict, error: str | None, tool_calls: list[dict]) -> None:
    store = get_store()
    for call in tool_calls:
        await store.record_tool_call(
            payload["run_id"], call["call_id"], call["name"], call["input"] or {}, outcome_of(call),
            output=call["content"] if not call["is_error"] else None,
            error=call["content"] if call["is_error"] else None,
            duration_ms=call["duration_ms"], http=call.get("http") or None,
        )
    await store.update_run(payload["run_id"], status=status, stop_reason=stop_reason, usage=usage, error=error)


async def record_lost_run(payload: dict, error: str) -> bool:
    """End a run nobody executes: the run shows the error and the session's history says so too.
    False when the run had already ended."""
    store = get_store()
    try:
        await store.update_run(payload["run_id"], status="error", error=error)
    except InvalidInput:
        return False
    await store.append_message(
        payload["session_id"], "assistant", [{"type": "text", "text": ""}], run_id=payload["run_id"],
        interrupted=f"error: {error}",
    )
    return True
