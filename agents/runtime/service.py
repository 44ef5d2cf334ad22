"""The run service: the one way to start a run, read its events and abort it.

Every entry point (the gateway's `chat.*` methods, webhooks, and every later one) translates its wire
format into these calls and back, so routing, sessions and their history, the busy policy,
idempotency, handing runs to workers and persistence are the same whichever way a message came in:

    started = await service.start(Origin("token:alice", "gateway"), "hello", route=Message(channel="web"))
    async for event in service.events(started.run_id, admitted=started.admitted):
        ...  # delta, tool_call, tool_result, then done or error (each with run_id, session_key, seq)
    await service.abort(started.run_id)

Failures the caller should tell its client about raise `ServiceError`s (`NotFound`, `SessionBusy`,
`InvalidInput`), each with a stable `reason`; each entry point maps them once to its own wire errors.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass

from django.conf import settings

from agents.lookup import enabled_agent
from agents.models import Agent
from agents.store import DuplicateRun, RunNotFound, get_store
from routing.resolver import Message, NoRoute, aresolve_route, session_key

from . import board as run_board
from . import persist
from .board import MAX_WAIT_SECONDS, TERMINAL, get_board, make_event, publish
from .execute import count_run
from .worker import LOST, ensure_reaper, release_session, send_abort, submit

log = logging.getLogger(__name__)

MAX_TEXT = 100_000


class ServiceError(Exception):
    """A run the service will not start, find or touch. `reason` is stable; the message is for people."""

    reason = "invalid"

    def __init__(self, message: str, *, reason: str | None = None, **extra):
        super().__init__(message)
        if reason:
            self.reason = reason
        self.extra = extra


class NotFound(ServiceError):
    reason = "not_found"


class SessionBusy(ServiceError):
    reason = "session_busy"


class InvalidInput(ServiceError):
    reason = "invalid_input"

    def __init__(self, param: str, why: str):
        super().__init__(f"{param} {why}", param=param)
        self.param = param
        self.why = why


@dataclass(frozen=True)
class Origin:
    """Who asks for a run (`principal`, e.g. `token:alice` or `webhook:telegram`) and through which
    entry point (`entry`: `gateway`, `webhook`, ...)."""

    principal: str
    entry: str


@dataclass(frozen=True)
class Started:
    run_id: str
    session_id: str
    session_key: str
    agent: str
    queued: bool  # waiting for the session's previous run
    admitted: bool  # this call put the run on the board (False: a repeated idempotency key found it)


_accepted: list[Callable[[Started], Awaitable[None]]] = []


def on_run_accepted(listener: Callable[[Started], Awaitable[None]]) -> None:
    """Call `listener` with every run this process accepts from now on (a failing listener is logged;
    the run goes on)."""
    if listener not in _accepted:
        _accepted.append(listener)


async def _agent_and_key(agent: str, route: Message) -> tuple[Agent, str]:
    if agent:
        a = await enabled_agent(agent)
        if a is None:
            raise NotFound(f"no enabled agent named {agent!r}", reason="no_agent")
        return a, session_key(a.name, route)
    try:
        chosen = await aresolve_route(**asdict(route))
    except NoRoute as e:
        raise NotFound(str(e), reason="no_route") from None
    a = await enabled_agent(chosen.agent)
    if a is None:
        raise NotFound(f"the route chose agent {chosen.agent!r}, which no longer exists", reason="no_agent")
    return a, chosen.session_key


async def start(origin: Origin, text: str, *, route: Message = Message(), agent: str = "",
                idempotency_key: str = "") -> Started:
    """Accept a run of `text` for the agent that `route` resolves to (or the agent named `agent`).

    The run is recorded in the session store and put on the board; it starts at once or waits for the
    session's current run, as the agent's busy policy says. A repeated `idempotency_key` for the same
    session returns the run it started first (`admitted` False)."""
    if not text.strip():
        raise InvalidInput("text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput("text", f"is longer than {MAX_TEXT} characters")
    accepted_at = time.time()
    a, key = await _agent_and_key(agent, route)
    store = get_store()
    board = get_board()
    try:
        session, run = await store.start_run(key, a.name, idempotency_key or None, **asdict(route))
    except DuplicateRun as dup:
        # The same message again (a retry after a lost answer): the same run.
        known = await board.run(dup.run["id"])
        status = known["status"] if known else dup.run["status"]
        return Started(dup.run["id"], dup.run["session_id"], key, a.name, status == "queued", admitted=False)
    payload = {
        "run_id": run["id"],
        "session_id": session["id"],
        "session_key": key,
        "agent": a.name,
        "agent_snapshot": a.snapshot(),
        "origin": asdict(origin),
        "text": text,
        "accepted_at": accepted_at,
    }
    try:
        admission = await board.admit(payload, a.busy_policy, settings.AGENT_RUN_CLAIM_SECONDS)
    except run_board.SessionBusy:
        await store.update_run(run["id"], status="error", error="rejected: the session already had a run")
        raise SessionBusy(
            f"session {key} already has a run and agent {a.name!r} rejects new ones until it ends", session_key=key
        ) from None
    ensure_reaper()
    if admission.start:
        await submit(payload)
    started = Started(run["id"], session["id"], key, a.name, queued=not admission.start, admitted=True)
    log.info("run %s accepted for %s via %s (agent %s)", run["id"], origin.principal, origin.entry, a.name,
             extra={"run_id": run["id"], "session_key": key})
    for listener in _accepted:
        try:
            await listener(started)
        except Exception:
            log.exception("a listener of accepted runs failed for run %s; the run goes on", run["id"])
    return started


def _ending(run: dict) -> dict:
    """A run's last event, as the store recorded its outcome."""
    if run["status"] == "error":
        reason, sep, message = (run.get("error") or "").partition(": ")
        if not sep or not reason.replace("_", "").isalnum():
            reason, message = "error", run.get("error") or "the run failed"
        return {"type": "error", "reason": reason, "message": message}
    return {"type": "done", "stop_reason": run.get("stop_reason") or run["status"], "usage": run["usage"],
            "timings": {"first_delta_ms": None, "total_ms": None}}


async def _ending_from_store(board, run_id: str, last: int, settle_lost: bool) -> dict | None:
    """The last event of a run the board does not know, from the store; None if the store does not
    know it either, or it is unfinished and `settle_lost` is false."""
    store = get_store()
    try:
        run = await store.get_run(run_id)
    except RunNotFound:
        return None
    if run["status"] not in TERMINAL:
        # Only where the board sees every live run: a shared board, or the one process an embedded
        # store allows. Several gateways with in-memory boards each see only their own runs.
        if not settle_lost or not (board.shared or store.embedded):
            return None
        reason, message = LOST
        await persist.record_lost_run({"run_id": run_id, "session_id": run["session_id"]}, f"{reason}: {message}")
        run = await store.get_run(run_id)  # ended here, or by whoever got there first
    return make_event(run_id, run["session_key"], last + 1, _ending(run))


async def events(run_id: str, after_seq: int = 0, *, admitted: bool = False) -> AsyncIterator[dict]:
    """The run's events after `after_seq`, in `seq` order, live until its last one (`done` or `error`).

    A run the board does not know (its events were forgotten after AGENT_RUN_EVENTS_TTL, or the process
    that ran it died with its in-process board) still gets an ending from the session store: its
    outcome as recorded, or, for a run recorded as unfinished that nothing can be executing any more,
    `worker_lost`, recorded in the store first. `admitted`: the caller has just put the run on the
    board (`Started.admitted`), so it need not be looked up there first."""
    board = get_board()
    last = after_seq
    if not admitted and await board.run(run_id) is None:
        # An ended run is answered from the store at once. An unfinished one may be about to be
        # admitted (a repeated start racing its first call), so it is judged lost only if the board
        # still does not know it after a pause.
        ending = await _ending_from_store(board, run_id, last, settle_lost=False)
        if ending is not None:
            yield ending
            return
        await asyncio.sleep(MAX_WAIT_SECONDS)
        if await board.run(run_id) is None:
            ending = await _ending_from_store(board, run_id, last, settle_lost=True)
            if ending is not None:
                yield ending
            return
    while True:
        batch = await board.wait_events(run_id, last, MAX_WAIT_SECONDS)
        for event in batch:
            yield event
            last = event["seq"]
            if event["type"] in ("done", "error"):
                return
        if not batch:
            run = await board.run(run_id)
            if run is None:
                # Forgotten while read (its events outlived AGENT_RUN_EVENTS_TTL): end it from the store.
                ending = await _ending_from_store(board, run_id, last, settle_lost=False)
                if ending is not None:
                    yield ending
                return
            if run["status"] in TERMINAL and not await board.events_after(run_id, last):
                return


async def _known_run(run_id: str) -> dict:
    run = await get_board().run(run_id)
    if run is not None:
        return run
    try:
        stored = await get_store().get_run(run_id)
    except RunNotFound:
        raise NotFound(f"no run {run_id!r}", reason="no_run") from None
    return {"payload": None, "status": stored["status"]}


async def status(run_id: str) -> str:
    """`queued`, `running`, `done`, `error` or `aborted`; raises NotFound for an unknown run."""
    return (await _known_run(run_id))["status"]


async def abort(run_id: str) -> bool:
    """Stop a run now: its LLM stream and running tool calls are cancelled and it ends with stop reason
    `aborted`. False when it had already ended; raises NotFound for an unknown run."""
    run = await _known_run(run_id)
    if run["status"] in TERMINAL or run["payload"] is None:
        # Ended, or known only to the store: no process is executing it any more.
        return False
    if run["status"] == "queued":
        # Not started yet: end it here; a worker that receives it later finds it ended and skips it.
        body = {"type": "done", "stop_reason": "aborted", "usage": {"input_tokens": 0, "output_tokens": 0},
                "timings": {"first_delta_ms": None,
                            "total_ms": round((time.time() - run["payload"]["accepted_at"]) * 1000, 3)}}
        if await publish(run_id, body, terminal="aborted", only_if="queued") is not None:
            count_run(run["payload"], "aborted")
            await get_store().update_run(run_id, status="aborted", stop_reason="aborted")
            await release_session(run["payload"])
            return True
    await send_abort(run_id)
    return True
