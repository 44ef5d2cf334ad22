"""The agents app's gateway methods: `chat.*` on the run service, `sessions.*` on the session store,
and `agents.list` (docs/protocol.md describes each as a client sees it).

This module translates between JSON-RPC and the domain: parameters are declared (and checked) once,
here; the run service's and the store's errors are mapped once, in `_mapped`; a run's events go to the
connection that follows it as `chat.event` notifications.
"""

import asyncio
import contextlib
import logging
import weakref

from channels.db import database_sync_to_async

from agents.models import Agent
from agents.runtime import service
from agents.store import InvalidInput as StoreInvalid
from agents.store import SessionNotFound, get_store, jsonable
from common.routefields import FIELD_MAX_LENGTH, MATCH_FIELDS
from exoclaw.gateway.errors import Forbidden, InvalidParams, NotFound, SessionBusy
from exoclaw.gateway.health import register_health_check
from exoclaw.gateway.notify import group_name, notify_group
from exoclaw.gateway.registry import Param, method
from exoclaw.gateway.stats import run_finished, run_started
from routing.resolver import Message

from .health import store_health

log = logging.getLogger(__name__)

RUN_NOTIFICATION = "sessions.run"
SESSION_KEY = Param(str, required=True, max_length=600)
LIMIT = Param(int, default=50, minimum=1, maximum=200)
MAX_SEQ = 2**62  # the largest event and message number the stores take
ACTIVE_RUN_STATUSES = ("queued", "running")

register_health_check("store", store_health)


@contextlib.contextmanager
def _mapped():
    """The run service's and the session store's errors as the gateway's."""
    try:
        yield
    except service.InvalidInput as e:
        raise InvalidParams(e.param, e.why) from None
    except service.SessionBusy as e:
        raise SessionBusy(str(e), **e.extra) from None
    except service.Forbidden as e:
        raise Forbidden(str(e), reason="forbidden", **e.extra) from None
    except service.NotFound as e:
        raise NotFound(str(e), reason=e.reason) from None
    except StoreInvalid as e:
        raise InvalidParams("params", str(e)) from None
    except SessionNotFound as e:
        raise NotFound(str(e), reason="no_session") from None


def _origin(ctx) -> service.Origin:
    """The connection's principal as the run service knows it: `admin` may act in every channel and
    name every agent; sessions:read reads and sessions:write steers every conversation."""
    p = ctx.principal
    every = frozenset({"*"}) if "admin" in p.scopes else None
    return service.Origin(
        p.name, "gateway", channels=every or p.channels, agents=every or p.agents,
        reads_all=p.allows("sessions:read"), steers_all=p.allows("sessions:write"),
    )


class _Follower:
    """One connection following one run: the task sending its events, and the connection's run slot
    when the connection started the run (held until the run ends, whoever follows it meanwhile)."""

    def __init__(self, slot):
        self.slot = slot
        self.task: asyncio.Task | None = None

    def release(self) -> None:
        if self.slot is not None:
            self.slot.release()
            self.slot = None
            run_finished()


# Each connection has at most one follower per run.
_followers: "weakref.WeakKeyDictionary[object, dict[str, _Follower]]" = weakref.WeakKeyDictionary()


def _following(ctx) -> dict[str, _Follower]:
    followers = _followers.get(ctx)
    if followers is None:
        followers = _followers[ctx] = {}
        ctx.on_close(lambda: [f.task.cancel() for f in list(followers.values())])
    return followers


async def _forward(ctx, origin: service.Origin, run_id: str, after_seq: int, follower: _Follower,
                   admitted: bool) -> None:
    try:
        async for event in service.events(origin, run_id, after_seq, admitted=admitted):
            await ctx.notify("chat.event", event)
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("following run %s for connection %s failed", run_id, ctx.connection_id)
    finally:
        follower.release()
        followers = _followers.get(ctx)
        if followers is not None and followers.get(run_id) is follower:
            del followers[run_id]


def follow(ctx, origin: service.Origin, run_id: str, after_seq: int = 0, slot=None, admitted: bool = False) -> None:
    """Send the run's events after `after_seq` to this connection. A follower this connection already
    had for the run is replaced, and its run slot passes to the new one: following again (say
    `chat.subscribe` after `chat.send`) neither frees the slot nor takes a second."""
    followers = _following(ctx)
    old = followers.pop(run_id, None)
    if old is not None:
        old.task.cancel()
    if old is not None and old.slot is not None:
        # The run keeps the slot it holds (a repeated chat.send of its key took another: given back).
        if slot is not None:
            slot.release()
        slot, old.slot = old.slot, None
    elif slot is not None:
        # `status` counts the runs this gateway process's connections started and are following.
        run_started()
    follower = followers[run_id] = _Follower(slot)
    follower.task = asyncio.create_task(_forward(ctx, origin, run_id, after_seq, follower, admitted),
                                        name=f"follow-{run_id}")


@method(
    "chat.send",
    scope="chat",
    params={
        "text": Param(str, required=True),
        "agent": Param(str, default="", max_length=50),
        **{f: Param(str, default="", max_length=FIELD_MAX_LENGTH) for f in MATCH_FIELDS},
        "idempotency_key": Param(str, default="", max_length=200),
    },
)
async def chat_send(ctx, *, text: str, agent: str, idempotency_key: str, **fields: str) -> dict:
    """Start a run: answers at once with its id; its events follow as `chat.event` notifications."""
    origin = _origin(ctx)
    slot = ctx.claim_run()
    try:
        with _mapped():
            started = await service.start(
                origin, text, route=Message(**fields), agent=agent, idempotency_key=idempotency_key
            )
        follow(ctx, origin, started.run_id, 0, slot, admitted=started.admitted)
    except BaseException:
        slot.release()
        raise
    return {"run_id": started.run_id, "session_key": started.session_key, "agent": started.agent,
            "queued": started.queued}


@method("chat.abort", scope=("chat", "sessions:write"), params={"run_id": Param(str, required=True, max_length=64)})
async def chat_abort(ctx, *, run_id: str) -> dict:
    """Stop a run now: its stream and running tool calls are cancelled and it ends with stop reason `aborted`."""
    with _mapped():
        return {"run_id": run_id, "aborted": await service.abort(_origin(ctx), run_id)}


@method(
    "chat.subscribe",
    scope=("chat", "sessions:read"),
    params={"run_id": Param(str, required=True, max_length=64),
            "after_seq": Param(int, default=0, minimum=0, maximum=MAX_SEQ)},
)
async def chat_subscribe(ctx, *, run_id: str, after_seq: int) -> dict:
    """Replay a run's events after `after_seq`, then continue live until the run ends."""
    origin = _origin(ctx)
    with _mapped():
        status = await service.status(origin, run_id)
    # Also a run known only to the store: the run service gives it its ending from there.
    follow(ctx, origin, run_id, after_seq)
    return {"run_id": run_id, "status": status}


def session_group(session_key: str) -> str:
    return group_name("session", session_key)


async def announce_run(started: service.Started) -> None:
    """Tell the connections following this session (`sessions.follow`) that a run was accepted."""
    await notify_group(session_group(started.session_key), RUN_NOTIFICATION, {
        "session_key": started.session_key, "session_id": started.session_id, "run_id": started.run_id,
        "agent": started.agent, "queued": started.queued,
    })


service.on_run_accepted(announce_run)


@method(
    "sessions.list",
    scope=("chat", "sessions:read"),
    params={
        "agent": Param(str, default="", max_length=50),
        "channel": Param(str, default="", max_length=FIELD_MAX_LENGTH),
        "peer": Param(str, default="", max_length=FIELD_MAX_LENGTH),
        "q": Param(str, default="", max_length=200),
        "limit": LIMIT,
        "cursor": Param(str, default="", max_length=100),
    },
)
async def sessions_list(ctx, *, agent: str, channel: str, peer: str, q: str, limit: int, cursor: str) -> dict:
    """Sessions, newest activity first, filtered and searched: every one with sessions:read, else the
    principal's own. {"sessions": [session], "total": n, "next_cursor": str | null}."""
    origin = _origin(ctx)
    with _mapped():
        page = await get_store().list_sessions(
            agent=agent or None, channel=channel or None, peer=peer or None, q=q or None, limit=limit,
            cursor=cursor or None, owner=None if origin.reads_all else origin.principal,
        )
    return jsonable({"sessions": page["items"], "total": page["total"], "next_cursor": page["next_cursor"]})


def _no_session(session_key: str) -> NotFound:
    return NotFound(f"no session {session_key}", reason="no_session")


@method(
    "sessions.history",
    scope=("chat", "sessions:read"),
    params={"session_key": SESSION_KEY, "limit": LIMIT, "before_seq": Param(int, minimum=1, maximum=MAX_SEQ)},
)
async def sessions_history(ctx, *, session_key: str, limit: int, before_seq: int | None) -> dict:
    """A session's messages, newest page first: {"session": session, "messages": [message], "has_more": bool};
    a session id works as well as a key. Someone else's session is not found, unless sessions:read."""
    with _mapped():
        page = await get_store().history(session_key, limit=limit, before_seq=before_seq)
    if not _origin(ctx).may_read(page["session"]["owner"]):
        raise _no_session(session_key)
    return jsonable(page)


@method("sessions.reset", scope=("chat", "sessions:write"), params={"session_key": SESSION_KEY})
async def sessions_reset(ctx, *, session_key: str) -> dict:
    """Start the key's conversation afresh: {"session": the new session, "previous_session_id": str}.
    Someone else's session is not found, unless sessions:write."""
    if not session_key.startswith("agent:"):
        raise InvalidParams("session_key", "must be a session key (agent:<agent>:<channel>:<account>:<peer>)")
    store = get_store()
    with _mapped():
        current = await store.current_session(session_key)
        if current is None or not _origin(ctx).may_steer(current["owner"]):
            raise _no_session(session_key)
        session = await store.reset(session_key)
    return jsonable({"session": session, "previous_session_id": session["previous_id"]})


@method("sessions.follow", scope=("chat", "sessions:read"), params={"session_key": SESSION_KEY})
async def sessions_follow(ctx, *, session_key: str) -> dict:
    """{"session": session, "runs": [{"run_id", "status"}]}: the session's runs that are queued or
    running, oldest first, then a `sessions.run` notification for each run accepted later. A session id
    works as well as a key.

    The connection joins the session's group before the runs are read, so a run that starts after the
    read is announced to it, and none falls between the two."""
    store = get_store()
    with _mapped():
        if session_key.startswith("agent:"):
            session = await store.current_session(session_key)
            if session is None:
                raise SessionNotFound(f"no session for key {session_key}")
        else:
            session = await store.get_session(session_key)
        if not _origin(ctx).may_read(session["owner"]):
            raise _no_session(session_key)
        await ctx.join(session_group(session["key"]))
        runs = [{"run_id": r["id"], "status": r["status"]} for r in await store.runs(session["id"])
                if r["status"] in ACTIVE_RUN_STATUSES]
    return jsonable({"session": session, "runs": runs})


@database_sync_to_async
def _agents() -> list[dict]:
    return list(Agent.objects.order_by("name").values("name", "provider", "model", "tools", "busy_policy", "enabled"))


@method("agents.list", scope=None)
async def agents_list(ctx) -> list[dict]:
    """Every agent: name, provider, model, tool allowlist, busy policy and whether it is enabled."""
    return await _agents()
