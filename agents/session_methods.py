"""The gateway methods over the session store: `sessions.list`, `sessions.history`, `sessions.reset`."""

from agents.store import InvalidInput, SessionNotFound, get_store, jsonable
from exoclaw.gateway.errors import InvalidParams, NotFound
from exoclaw.gateway.registry import Param, method

FIELD = 128


@method(
    "sessions.list",
    scope="sessions:read",
    params={
        "agent": Param(str, default=None, max_length=50),
        "channel": Param(str, default=None, max_length=FIELD),
        "peer": Param(str, default=None, max_length=FIELD),
        "q": Param(str, default=None, max_length=200),
        "limit": Param(int, default=50),
        "cursor": Param(str, default=None, max_length=100),
    },
)
async def sessions_list(ctx, *, agent, channel, peer, q, limit, cursor) -> dict:
    """Sessions, most recently active first: `{items, total, next_cursor}`; pass `next_cursor` back for the next page."""
    if not 1 <= limit <= 500:
        raise InvalidParams("limit", "must be between 1 and 500")
    try:
        page = await get_store().list_sessions(agent=agent, channel=channel, peer=peer, q=q, limit=limit, cursor=cursor)
    except InvalidInput as e:
        raise InvalidParams("cursor", str(e)) from None
    return jsonable({"items": page["items"], "total": page["total"], "next_cursor": page["next_cursor"]})


@method(
    "sessions.history",
    scope="sessions:read",
    params={
        "session_key": Param(str, required=True, max_length=600),
        "limit": Param(int, default=50),
        "before_seq": Param(int, default=None),
    },
)
async def sessions_history(ctx, *, session_key, limit, before_seq) -> dict:
    """A page of the session's messages, oldest first, ending before `before_seq` (default: the latest)."""
    if not 1 <= limit <= 1000:
        raise InvalidParams("limit", "must be between 1 and 1000")
    if before_seq is not None and before_seq < 1:
        raise InvalidParams("before_seq", "must be 1 or more")
    try:
        return jsonable(await get_store().history(session_key, limit=limit, before_seq=before_seq))
    except SessionNotFound:
        raise NotFound(f"no session {session_key!r}", reason="no_session") from None


@method("sessions.reset", scope="sessions:write", params={"session_key": Param(str, required=True, max_length=600)})
async def sessions_reset(ctx, *, session_key) -> dict:
    """Start a fresh session under the key; the old one stays browsable (`previous_id`)."""
    try:
        return jsonable({"session": await get_store().reset(session_key)})
    except SessionNotFound:
        raise NotFound(f"no session {session_key!r}", reason="no_session") from None
