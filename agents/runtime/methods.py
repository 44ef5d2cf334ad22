"""The gateway methods of the agent runtime: `chat.send`, `chat.abort`, `chat.subscribe`.

Registered into the gateway's method table when the agents app is ready. docs/protocol.md describes
each one as the client sees it.
"""

import logging
import time

from channels.layers import get_channel_layer
from django.conf import settings

from agents.lookup import enabled_agent
from agents.models import Agent
from agents.session_rpc import announce_run
from agents.store import DuplicateRun, RunNotFound, get_store
from exoclaw.gateway.errors import InvalidParams, NotFound, SessionBusy
from exoclaw.gateway.registry import Param, method
from routing.resolver import Message, NoRoute, aresolve_route, session_key

from . import board as run_board
from .execute import release_and_continue
from .follow import follow
from .persist import agent_config
from .reaper import ensure_reaper
from .runs import control_group, dispatch, get_board, publish

FIELD = 128  # routing fields' max_length in routing.models.Binding
ROUTE_FIELDS = ("channel", "account", "peer", "guild", "team")
MAX_TEXT = 100_000

log = logging.getLogger(__name__)


async def _agent_and_key(agent: str, fields: dict) -> tuple[Agent, str]:
    if agent:
        a = await enabled_agent(agent)
        if a is None:
            raise NotFound(f"no enabled agent named {agent!r}", reason="no_agent")
        return a, session_key(a.name, Message(**fields))
    try:
        route = await aresolve_route(**fields)
    except NoRoute as e:
        raise NotFound(str(e), reason="no_route") from None
    a = await enabled_agent(route.agent)
    if a is None:
        raise NotFound(f"the route chose agent {route.agent!r}, which no longer exists", reason="no_agent")
    return a, route.session_key


@method(
    "chat.send",
    scope="chat",
    params={
        "text": Param(str, required=True, max_length=MAX_TEXT),
        "agent": Param(str, default="", max_length=50),
        **{f: Param(str, default="", max_length=FIELD) for f in ROUTE_FIELDS},
        "idempotency_key": Param(str, default="", max_length=200),
    },
)
async def chat_send(ctx, *, text: str, agent: str, idempotency_key: str, **fields: str) -> dict:
    """Start a run: answers at once with its id; its events follow as `chat.event` notifications."""
    if not text.strip():
        raise InvalidParams("text", "must not be empty")
    accepted_at = time.time()
    a, key = await _agent_and_key(agent, fields)
    store = get_store()
    board = get_board()
    slot = ctx.claim_run()
    try:
        try:
            session, run = await store.start_run(key, a.name, idempotency_key or None, **fields)
        except DuplicateRun as dup:
            # The same message again (a retry after a lost answer): the same run, followed from the start.
            known = await board.run(dup.run["id"])
            follow(ctx, dup.run["id"], 0, slot)
            status = known["status"] if known else dup.run["status"]
            return {"run_id": dup.run["id"], "session_key": key, "agent": a.name, "queued": status == "queued"}
        payload = {
            "run_id": run["id"],
            "session_id": session["id"],
            "session_key": key,
            "agent": a.name,
            "agent_config": agent_config(a),
            "text": text,
            "accepted_at": accepted_at,
        }
        try:
            admission = await board.admit(payload, a.busy_policy, settings.AGENT_RUN_CLAIM_SECONDS)
        except run_board.SessionBusy:
            await store.update_run(run["id"], status="error", error="rejected: the session already had a run")
            raise SessionBusy(
                f"session {key} already has a run and agent {a.name!r} rejects new ones until it ends",
                session_key=key,
            ) from None
        follow(ctx, run["id"], 0, slot, on_board=True)
        ensure_reaper()
        if admission.start:
            await dispatch(payload)
        try:
            await announce_run(session_key=key, session_id=session["id"], run_id=run["id"], agent=a.name,
                               queued=not admission.start)
        except Exception:
            # Observers (sessions.follow) miss this run's notice; the sender's run is accepted and goes on.
            log.exception("announcing run %s to the followers of session %s failed", run["id"], key)
        return {"run_id": run["id"], "session_key": key, "agent": a.name, "queued": not admission.start}
    except BaseException:
        slot.release()
        raise


async def _known_run(run_id: str) -> dict:
    run = await get_board().run(run_id)
    if run is not None:
        return run
    try:
        stored = await get_store().get_run(run_id)
    except RunNotFound:
        raise NotFound(f"no run {run_id!r}", reason="no_run") from None
    return {"payload": None, "status": stored["status"]}


@method("chat.abort", scope="chat", params={"run_id": Param(str, required=True, max_length=64)})
async def chat_abort(ctx, *, run_id: str) -> dict:
    """Stop a run now: its stream and running tool calls are cancelled and it ends with stop reason `aborted`."""
    run = await _known_run(run_id)
    if run["status"] in run_board.TERMINAL or run["payload"] is None:
        # Ended, or known only to the store: no process is executing it any more.
        return {"run_id": run_id, "aborted": False}
    if run["status"] == "queued":
        # Not started yet: end it here; a worker that receives it later finds it ended and skips it.
        body = {"type": "done", "stop_reason": "aborted", "usage": {"input_tokens": 0, "output_tokens": 0},
                "timings": {"first_delta_ms": None, "total_ms": round((time.time() - run["payload"]["accepted_at"]) * 1000, 3)}}
        if await publish(run_id, body, terminal="aborted", only_if="queued") is not None:
            await get_store().update_run(run_id, status="aborted", stop_reason="aborted")
            await release_and_continue(run["payload"])
            return {"run_id": run_id, "aborted": True}
    await get_channel_layer().group_send(control_group(run_id), {"type": "run.abort", "run_id": run_id})
    return {"run_id": run_id, "aborted": True}


@method(
    "chat.subscribe",
    scope="chat",
    params={"run_id": Param(str, required=True, max_length=64), "after_seq": Param(int, default=0)},
)
async def chat_subscribe(ctx, *, run_id: str, after_seq: int) -> dict:
    """Replay a run's events after `after_seq`, then continue live until the run ends."""
    if after_seq < 0:
        raise InvalidParams("after_seq", "must be 0 or more")
    run = await _known_run(run_id)
    # Also a run known only to the store: the follower gives it its ending from there.
    follow(ctx, run_id, after_seq)
    return {"run_id": run_id, "status": run["status"]}
