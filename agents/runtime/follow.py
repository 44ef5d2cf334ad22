"""Following a run from a gateway connection: send its events, in `seq` order, until its last one.

A follower reads the run's log from the last `seq` it sent and blocks on the board until more
arrives, so a connection gets each event exactly once, whether it started the run, subscribed
late, or came back after a disconnect.

A run the board does not know (its events were forgotten after AGENT_RUN_EVENTS_TTL, or the process
that ran it died with its in-process board) still gets an ending from the session store: its
outcome as recorded, or, for a run recorded as unfinished that nothing can be executing any more,
`worker_lost`, recorded in the store first.
"""

import asyncio
import logging
import weakref

from agents.store import RunNotFound, get_store
from exoclaw.gateway.stats import run_finished, run_started

from . import persist
from .board import MAX_WAIT_SECONDS, TERMINAL, MemoryBoard, _event_with_seq
from .reaper import LOST
from .runs import get_board

log = logging.getLogger(__name__)

_followers: "weakref.WeakKeyDictionary[object, dict[str, asyncio.Task]]" = weakref.WeakKeyDictionary()


def following(ctx) -> dict[str, asyncio.Task]:
    tasks = _followers.get(ctx)
    if tasks is None:
        tasks = _followers[ctx] = {}
        ctx.on_close(lambda: [t.cancel() for t in list(tasks.values())])
    return tasks


def _ending(run: dict) -> dict:
    """A run's last event, as the store recorded its outcome."""
    if run["status"] == "error":
        reason, sep, message = (run.get("error") or "").partition(": ")
        if not sep or not reason.replace("_", "").isalnum():
            reason, message = "error", run.get("error") or "the run failed"
        return {"type": "error", "reason": reason, "message": message}
    return {"type": "done", "stop_reason": run.get("stop_reason") or run["status"], "usage": run["usage"],
            "timings": {"first_delta_ms": None, "total_ms": None}}


async def _end_from_store(ctx, board, run_id: str, last: int, settle_lost: bool) -> bool:
    """Send the connection the last event of a run the board does not know, from the store; False
    (nothing sent) if the store does not know it either, or it is unfinished and `settle_lost` is false."""
    store = get_store()
    try:
        run = await store.get_run(run_id)
    except RunNotFound:
        return False
    if run["status"] not in TERMINAL:
        # Only where the board sees every live run: a shared board, or the one process an embedded
        # store allows. Several gateways with in-memory boards each see only their own runs.
        if not settle_lost or (isinstance(board, MemoryBoard) and not store.embedded):
            return False
        reason, message = LOST
        await persist.record_lost_run({"run_id": run_id, "session_id": run["session_id"]}, f"{reason}: {message}")
        run = await store.get_run(run_id)  # ended here, or by whoever got there first
    await ctx.notify("chat.event", _event_with_seq(run_id, run["session_key"], last + 1, _ending(run)))
    return True


async def _follow(ctx, run_id: str, after_seq: int, slot, on_board: bool) -> None:
    board = get_board()
    last = after_seq
    try:
        if not on_board and await board.run(run_id) is None:
            # An ended run is answered from the store at once. An unfinished one may be about to be
            # admitted (a repeated chat.send racing its first call), so it is judged lost only if the
            # board still does not know it after a pause.
            if await _end_from_store(ctx, board, run_id, last, settle_lost=False):
                return
            await asyncio.sleep(MAX_WAIT_SECONDS)
            if await board.run(run_id) is None:
                await _end_from_store(ctx, board, run_id, last, settle_lost=True)
                return
        while True:
            events = await board.wait_events(run_id, last, MAX_WAIT_SECONDS)
            for event in events:
                await ctx.notify("chat.event", event)
                last = event["seq"]
                if event["type"] in ("done", "error"):
                    return
            if not events:
                run = await board.run(run_id)
                if run is None:
                    # Forgotten while followed (its events outlived AGENT_RUN_EVENTS_TTL): end it from the store.
                    await _end_from_store(ctx, board, run_id, last, settle_lost=False)
                    return
                if run["status"] in TERMINAL and not await board.events_after(run_id, last):
                    return
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("following run %s for connection %s failed", run_id, getattr(ctx, "connection_id", "?"))
    finally:
        if slot is not None:
            slot.release()
            run_finished()
        tasks = _followers.get(ctx)
        if tasks is not None and tasks.get(run_id) is asyncio.current_task():
            del tasks[run_id]


def follow(ctx, run_id: str, after_seq: int = 0, slot=None, on_board: bool = False) -> None:
    """Start sending the run's events after `after_seq` to this connection (replacing an earlier follower).
    `on_board`: the caller has just put the run on the board, so it need not be looked up there first."""
    tasks = following(ctx)
    old = tasks.pop(run_id, None)
    if old is not None:
        old.cancel()
    if slot is not None:
        # `status` counts the runs this gateway process's connections started and are following.
        run_started()
    tasks[run_id] = asyncio.create_task(_follow(ctx, run_id, after_seq, slot, on_board), name=f"follow-{run_id}")
