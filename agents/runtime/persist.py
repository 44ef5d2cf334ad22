"""What a run reads from and writes to the session store."""

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


async def context(payload: dict, n: int) -> list[dict]:
    """The session's last `n` messages as the LLM request starts from them. Read whole every run: a
    per-process cache of recent sessions saved less than half a millisecond of a run's time to the
    first delta (bench/chat.py, docs/benchmarks.md) and was removed."""
    got = await get_store().llm_context(payload["session_id"], n)
    return trim_context(_sendable(got["messages"]))


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
