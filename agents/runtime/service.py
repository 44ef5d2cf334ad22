"""The run service: the one way to start a run, read its events and abort it.

Every entry point (the gateway's `chat.*` methods, webhooks, and every later one) translates its wire
format into these calls and back, so routing, sessions and their history, the busy policy,
idempotency, handing runs to workers and persistence are the same whichever way a message came in:

    me = Origin("token:alice", "gateway")
    started = await service.start(me, "hello", route=Message(channel="web"))
    async for event in service.events(me, started.run_id, admitted=started.admitted):
        ...  # delta, tool_call, tool_result, then done or error (each with run_id, session_key, seq)
    await service.abort(me, started.run_id)

Every conversation belongs to someone (docs/protocol.md, "Ownership"). A principal's conversations
live in its own namespace: the route's `account` is the principal, so nobody lands in another's
session; a channel served by a webhook endpoint is its platform's namespace, where only origins with
that channel's permission act (the webhook itself, or a bridge token). Naming an agent instead of
letting routing choose needs the agent's permission. A run or session of someone else answers as if
it did not exist, unless the origin may read (or steer) every conversation.

Failures the caller should tell its client about raise `ServiceError`s (`NotFound`, `Forbidden`,
`SessionBusy`, `InvalidInput`), each with a stable `reason`; each entry point maps them once to its
own wire errors.
"""

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace

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
# A context given instead of the session's history (`start(context=...)`): at most this many
# messages, and this much text in all.
MAX_CONTEXT_MESSAGES = 1_000
MAX_CONTEXT_TEXT = 20 * MAX_TEXT
CONTEXT_ROLES = ("system", "user", "assistant")


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


class Forbidden(ServiceError):
    reason = "forbidden"


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
    """Who asks (`principal`, e.g. `token:alice` or `webhook:telegram`), through which entry point
    (`entry`: `gateway`, `webhook`, ...), and what it may do beyond its own conversations: act in
    these platform `channels` and name these `agents` ("*": every one), read (`reads_all`) or abort
    and reset (`steers_all`) every conversation."""

    principal: str
    entry: str
    channels: frozenset[str] = field(default_factory=frozenset)
    agents: frozenset[str] = field(default_factory=frozenset)
    reads_all: bool = False
    steers_all: bool = False

    def may_use_channel(self, channel: str) -> bool:
        return "*" in self.channels or channel in self.channels

    def may_name_agent(self, agent: str) -> bool:
        return "*" in self.agents or agent in self.agents

    def owns(self, owner: str) -> bool:
        """Whether a conversation of `owner` (a principal, or `channel:<name>`) is this origin's."""
        kind, _, channel = owner.partition(":")
        return owner == self.principal or (kind == "channel" and self.may_use_channel(channel))

    def may_read(self, owner: str) -> bool:
        return self.reads_all or self.owns(owner)

    def may_steer(self, owner: str) -> bool:
        return self.steers_all or self.owns(owner)


@dataclass(frozen=True)
class Started:
    run_id: str
    session_id: str
    session_key: str
    agent: str
    queued: bool  # waiting for the session's previous run
    admitted: bool  # this call put the run on the board (False: a repeated idempotency key found it)


_accepted: list[Callable[[Started], Awaitable[None]]] = []
_platform_checks: list[Callable[[str], Awaitable[bool]]] = []


def on_run_accepted(listener: Callable[[Started], Awaitable[None]]) -> None:
    """Call `listener` with every run this process accepts from now on (a failing listener is logged;
    the run goes on)."""
    if listener not in _accepted:
        _accepted.append(listener)


def serve_platform_channels(check: Callable[[str], Awaitable[bool]]) -> None:
    """Declare which channels platforms serve: `check(channel)` answers whether one does. Those are
    their platforms' namespaces (the webhooks app declares its endpoints' channels)."""
    if check not in _platform_checks:
        _platform_checks.append(check)


async def _namespace(origin: Origin, route: Message) -> tuple[Message, str]:
    """The route as `origin` may use it, and the owner of the conversation it reaches."""
    if route.channel:
        for check in _platform_checks:
            if await check(route.channel):
                if not origin.may_use_channel(route.channel):
                    raise Forbidden(f"channel {route.channel!r} is a platform's (a webhook endpoint serves it): "
                                    "acting in it needs the channel's permission", permission="channel")
                return route, f"channel:{route.channel}"
    if route.account and route.account != origin.principal and not origin.steers_all:
        raise Forbidden(f"account {route.account!r} is not {origin.principal}'s: leave it empty, your "
                        "conversations are under your own", permission="account")
    return replace(route, account=route.account or origin.principal), route.account or origin.principal


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


def _checked_context(context: list) -> list[dict]:
    if not isinstance(context, list):
        raise InvalidInput("context", "must be a list of messages")
    if len(context) > MAX_CONTEXT_MESSAGES:
        raise InvalidInput("context", f"has more than {MAX_CONTEXT_MESSAGES} messages")
    checked = []
    for i, m in enumerate(context):
        if not isinstance(m, dict) or m.get("role") not in CONTEXT_ROLES or not isinstance(m.get("content"), str):
            raise InvalidInput(f"context[{i}]", "must be {'role': 'system', 'user' or 'assistant', 'content': text}")
        checked.append({"role": m["role"], "content": m["content"]})
    if sum(len(m["content"]) for m in checked) > MAX_CONTEXT_TEXT:
        raise InvalidInput("context", f"is longer than {MAX_CONTEXT_TEXT} characters in all")
    return checked


async def start(origin: Origin, text: str, *, route: Message = Message(), agent: str = "",
                idempotency_key: str = "", context: list[dict] | None = None) -> Started:
    """Accept a run of `text` for the agent that `route` resolves to (or the agent named `agent`), in
    the origin's namespace (see above).

    The run is recorded in the session store and put on the board; it starts at once or waits for the
    session's current run, as the agent's busy policy says. A repeated `idempotency_key` of the same
    origin for the same session returns the run it started first (`admitted` False); keys of different
    origins never meet.

    `context`, when given, is what the run starts from instead of the session's stored history:
    `[{"role": "system" | "user" | "assistant", "content": text}, ...]`, oldest first (a client that
    keeps the conversation itself). Its system messages follow the agent's system prompt for this run;
    the rest is cut to the agent's `context_messages` like stored history. Only `text` and what the run
    says are stored, in the session the route reaches, as in any run."""
    if not text.strip():
        raise InvalidInput("text", "must not be empty")
    if len(text) > MAX_TEXT:
        raise InvalidInput("text", f"is longer than {MAX_TEXT} characters")
    if context is not None:
        context = _checked_context(context)
    if agent and not origin.may_name_agent(agent):
        raise Forbidden(f"naming agent {agent!r} needs the agent's permission; leave it out to let routing "
                        "choose", permission="agent")
    accepted_at = time.time()
    route, owner = await _namespace(origin, route)
    a, key = await _agent_and_key(agent, route)
    store = get_store()
    board = get_board()
    scoped_key = f"{origin.principal}|{idempotency_key}" if idempotency_key else None
    try:
        session, run = await store.start_run(key, a.name, scoped_key, owner=owner, **asdict(route))
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
        "origin": {"principal": origin.principal, "entry": origin.entry},
        "owner": owner,
        "text": text,
        "accepted_at": accepted_at,
    }
    if context is not None:
        payload["context"] = context
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


async def events(origin: Origin, run_id: str, after_seq: int = 0, *, admitted: bool = False) -> AsyncIterator[dict]:
    """The run's events after `after_seq`, in `seq` order, live until its last one (`done` or `error`).
    Raises NotFound for a run the origin may not read.

    A run the board does not know (its events were forgotten after AGENT_RUN_EVENTS_TTL, or the process
    that ran it died with its in-process board) still gets an ending from the session store: its
    outcome as recorded, or, for a run recorded as unfinished that nothing can be executing any more,
    `worker_lost`, recorded in the store first. `admitted`: the caller has just put the run on the
    board (`Started.admitted`), so it need not be looked up there first."""
    board = get_board()
    last = after_seq
    if not admitted and (await _known_run(origin, run_id, steer=False))["payload"] is None:
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


async def _known_run(origin: Origin, run_id: str, *, steer: bool) -> dict:
    """The run as the board knows it (`payload` None: known only to the store), if `origin` may read
    (or, with `steer`, abort) it; someone else's run is as unknown as one that never was."""
    run = await get_board().run(run_id)
    if run is not None:
        owner = run["payload"].get("owner", "")
    else:
        try:
            stored = await get_store().get_run(run_id)
        except RunNotFound:
            stored = None
        run = stored and {"payload": None, "status": stored["status"]}
        owner = stored["owner"] if stored else ""
    if run is None or not (origin.may_steer(owner) if steer else origin.may_read(owner)):
        raise NotFound(f"no run {run_id!r}", reason="no_run")
    return run


async def status(origin: Origin, run_id: str) -> str:
    """`queued`, `running`, `done`, `error` or `aborted`; raises NotFound for a run the origin may not read."""
    return (await _known_run(origin, run_id, steer=False))["status"]


async def abort(origin: Origin, run_id: str) -> bool:
    """Stop a run now: its LLM stream and running tool calls are cancelled and it ends with stop reason
    `aborted`. False when it had already ended; raises NotFound for a run the origin may not steer."""
    run = await _known_run(origin, run_id, steer=True)
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
