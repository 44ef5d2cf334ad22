"""Following a run from a gateway connection: send its events, in `seq` order, until its last one.

A follower reads the run's log from the last `seq` it sent and blocks on the board until more
arrives, so a connection gets each event exactly once, whether it started the run, subscribed
late, or came back after a disconnect.
"""

import asyncio
import logging
import weakref

from exoclaw.gateway.stats import run_finished, run_started

from .board import MAX_WAIT_SECONDS, TERMINAL
from .runs import get_board

log = logging.getLogger(__name__)

_followers: "weakref.WeakKeyDictionary[object, dict[str, asyncio.Task]]" = weakref.WeakKeyDictionary()


def following(ctx) -> dict[str, asyncio.Task]:
    tasks = _followers.get(ctx)
    if tasks is None:
        tasks = _followers[ctx] = {}
        ctx.on_close(lambda: [t.cancel() for t in list(tasks.values())])
    return tasks


async def _follow(ctx, run_id: str, after_seq: int, slot) -> None:
    board = get_board()
    last = after_seq
    try:
        while True:
            events = await board.wait_events(run_id, last, MAX_WAIT_SECONDS)
            for event in events:
                await ctx.notify("chat.event", event)
                last = event["seq"]
                if event["type"] in ("done", "error"):
                    return
            if not events:
                run = await board.run(run_id)
                if run is None or (run["status"] in TERMINAL and not await board.events_after(run_id, last)):
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


def follow(ctx, run_id: str, after_seq: int = 0, slot=None) -> None:
    """Start sending the run's events after `after_seq` to this connection (replacing an earlier follower)."""
    tasks = following(ctx)
    old = tasks.pop(run_id, None)
    if old is not None:
        old.cancel()
    if slot is not None:
        # `status` counts the runs this gateway process's connections started and are following.
        run_started()
    tasks[run_id] = asyncio.create_task(_follow(ctx, run_id, after_seq, slot), name=f"follow-{run_id}")
