"""Ending runs nobody is executing any more.

A worker renews the lease of each run it executes every third of `AGENT_RUN_LEASE_SECONDS`; a
dispatched run must be claimed within `AGENT_RUN_CLAIM_SECONDS`. Every worker and every gateway
process that has handled a run checks the board twice per lease period, so a run whose worker died
gets its `error` event within about 1.5 leases. Only one checker wins: the board refuses the second
terminal event.
"""

import asyncio
import logging
import weakref

from django.conf import settings

from . import persist
from .execute import release_and_continue
from .runs import get_board, publish

log = logging.getLogger(__name__)

_reapers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()

LOST = (
    "worker_lost",
    "The worker executing this run stopped responding (it crashed or was killed); the run was ended. "
    "Send the message again to retry.",
)
UNCLAIMED = (
    "no_worker",
    "No agent-run worker picked up this run. Start one with `python manage.py runworker agent-runs`.",
)


async def reap_once() -> list[str]:
    board = get_board()
    ended = []
    for run_id in await board.lapsed():
        run = await board.run(run_id)
        if run is None:
            continue
        reason, message = UNCLAIMED if run["status"] == "queued" else LOST
        # The store first, so a client that sees the error event finds it in the history too. The
        # store refuses to end a run twice, which settles a race with another reaper or the worker.
        if not await persist.record_lost_run(run["payload"], f"{reason}: {message}"):
            continue
        await publish(run_id, {"type": "error", "reason": reason, "message": message}, terminal="error")
        ended.append(run_id)
        log.warning("run %s ended: %s", run_id, reason)
        await release_and_continue(run["payload"])
    return ended


async def _reap_forever() -> None:
    while True:
        await asyncio.sleep(settings.AGENT_RUN_LEASE_SECONDS / 2)
        try:
            await reap_once()
        except Exception:
            log.exception("checking for lost runs failed; trying again")


def ensure_reaper() -> None:
    loop = asyncio.get_running_loop()
    task = _reapers.get(loop)
    if task is None or task.done():
        _reapers[loop] = loop.create_task(_reap_forever(), name="exoclaw-run-reaper")
