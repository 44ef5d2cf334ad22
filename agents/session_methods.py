"""The gateway's session methods: `sessions.list`, `sessions.history`, `sessions.reset`, `sessions.follow`.

Each takes the JSON-RPC `params` object and returns a JSON-ready result; bad params raise
`agents.store.InvalidInput` and unknown sessions `agents.store.SessionNotFound`, for the gateway to
map to its error codes. `SCOPES` names the token scope each method needs; the gateway checks it
before calling.
"""

from agents.store import InvalidInput, SessionNotFound, get_store, jsonable

SCOPES = {"sessions.list": "sessions:read", "sessions.history": "sessions:read", "sessions.reset": "sessions:write",
          "sessions.follow": "sessions:read"}
MAX_LIMIT = 200
ACTIVE_RUN_STATUSES = ("queued", "running")


def _params(params, allowed: set[str]) -> dict:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise InvalidInput("params must be an object")
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(f"unknown params: {', '.join(unknown)} (allowed: {', '.join(sorted(allowed))})")
    return params


def _string(params: dict, name: str, required: bool = False) -> str | None:
    value = params.get(name)
    if value is None or value == "":
        if required:
            raise InvalidInput(f"{name} is required")
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string")
    return value


def _int(params: dict, name: str, default: int | None, low: int, high: int) -> int | None:
    value = params.get(name, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{name} must be an integer from {low} to {high}")
    return value


async def sessions_list(params) -> dict:
    """{agent?, channel?, peer?, q?, limit? (1-200, default 50), cursor?} ->
    {"sessions": [session], "total": n, "next_cursor": str | null}"""
    p = _params(params, {"agent", "channel", "peer", "q", "limit", "cursor"})
    page = await get_store().list_sessions(
        agent=_string(p, "agent"), channel=_string(p, "channel"), peer=_string(p, "peer"), q=_string(p, "q"),
        limit=_int(p, "limit", 50, 1, MAX_LIMIT), cursor=_string(p, "cursor"),
    )
    return jsonable({"sessions": page["items"], "total": page["total"], "next_cursor": page["next_cursor"]})


async def sessions_history(params) -> dict:
    """{session_key, limit? (1-200, default 50), before_seq?} ->
    {"session": session, "messages": [message], "has_more": bool}; a session id works as well as a key."""
    p = _params(params, {"session_key", "limit", "before_seq"})
    result = await get_store().history(
        _string(p, "session_key", required=True), limit=_int(p, "limit", 50, 1, MAX_LIMIT),
        before_seq=_int(p, "before_seq", None, 1, 2**62),
    )
    return jsonable(result)


async def sessions_reset(params) -> dict:
    """{session_key} -> {"session": the new session, "previous_session_id": str}"""
    p = _params(params, {"session_key"})
    key = _string(p, "session_key", required=True)
    if not key.startswith("agent:"):
        raise InvalidInput("session_key must be a session key (agent:<agent>:<channel>:<account>:<peer>)")
    session = await get_store().reset(key)
    return jsonable({"session": session, "previous_session_id": session["previous_id"]})


async def sessions_follow(params, join=None) -> dict:
    """{session_key} -> {"session": session, "runs": [{"run_id", "status"}]}: the session's runs that are
    queued or running, oldest first. A session id works as well as a key.

    The gateway passes `join`, awaited with the session's key before the runs are read: a run that
    starts after the read is then announced to the caller (`agents.session_rpc.announce_run`), and
    none falls between the two."""
    p = _params(params, {"session_key"})
    key = _string(p, "session_key", required=True)
    store = get_store()
    if key.startswith("agent:"):
        session = await store.current_session(key)
        if session is None:
            raise SessionNotFound(f"no session for key {key}")
    else:
        session = await store.get_session(key)
    if join is not None:
        await join(session["key"])
    runs = [{"run_id": r["id"], "status": r["status"]} for r in await store.runs(session["id"])
            if r["status"] in ACTIVE_RUN_STATUSES]
    return jsonable({"session": session, "runs": runs})


METHODS = {"sessions.list": sessions_list, "sessions.history": sessions_history, "sessions.reset": sessions_reset,
           "sessions.follow": sessions_follow}
