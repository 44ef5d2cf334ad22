"""The worker side of runs: handing a run to a worker, the worker that claims and executes it, and
ending the runs that nobody executes any more.

The deployment mode follows the default channel layer, so there is one switch (`REDIS_URL`):

- Redis layer (distributed): runs go to the `agent-runs` channel, served by any number of
  `manage.py runworker agent-runs` processes.
- In-memory layer (one process): a `channel` protocol app only runs under `runworker`, which would
  be a second process with its own memory, so the process that submits a run starts the same
  Channels `Worker` over the same `AgentRunConsumer` itself, on its own event loop, the first time.

A worker renews the lease of each run it executes every third of `AGENT_RUN_LEASE_SECONDS`; a
submitted run must be claimed within `AGENT_RUN_CLAIM_SECONDS`. Every worker and every process that
has accepted a run checks the board twice per lease period (`ensure_reaper`), so a run whose worker
died gets its `error` event within about 1.5 leases. Only one checker wins: the board refuses the
second terminal event.
"""

import asyncio
import contextvars
import logging
import os
import socket
import uuid
import weakref

from channels.consumer import AsyncConsumer, get_handler_name
from channels.layers import get_channel_layer
from django.conf import settings

from . import persist
from .board import distributed, get_board, publish
from .execute import RunControl, count_run, execute_run

log = logging.getLogger(__name__)

RUNS_CHANNEL = "agent-runs"

LOST = (
    "worker_lost",
    "The worker executing this run stopped responding (it crashed or was killed); the run was ended. "
    "Send the message again to retry.",
)
UNCLAIMED = (
    "no_worker",
    "No agent-run worker picked up this run. Start one with `python manage.py runworker agent-runs`.",
)

_embedded: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()
_reapers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def control_group(run_id: str) -> str:
    """The worker consumer executing a run (it listens here for `run.abort`)."""
    return f"runctl.{run_id}"


async def submit(payload: dict) -> None:
    """Hand a run the board has started to whichever agent-run consumer is free."""
    layer = get_channel_layer()
    if not distributed(layer):
        _ensure_embedded_worker(layer)
    await layer.send(RUNS_CHANNEL, {"type": "agent.run", "run": payload})


async def send_abort(run_id: str) -> None:
    await get_channel_layer().group_send(control_group(run_id), {"type": "run.abort", "run_id": run_id})


async def release_session(payload: dict) -> None:
    """Free the run's session and submit the next run waiting for it, if any."""
    nxt = await get_board().release(payload["session_key"], payload["run_id"], settings.AGENT_RUN_CLAIM_SECONDS)
    if nxt is not None:
        await submit(nxt)


async def heartbeat(run_id: str) -> None:
    """Renew the run's lease until cancelled."""
    ttl = settings.AGENT_RUN_LEASE_SECONDS
    board = get_board()
    while True:
        await asyncio.sleep(ttl / 3)
        await board.renew(run_id, ttl)


class AgentRunConsumer(AsyncConsumer):
    """One instance per worker process for the `agent-runs` channel, fed messages one at a time, so
    `agent_run` only starts a task and returns: the instance stays free to take the next run and to
    handle `run.abort` for the runs it is executing."""

    async def __call__(self, scope, receive, send):
        self.tasks: dict[str, tuple[asyncio.Task, RunControl]] = {}
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.slots = asyncio.Semaphore(settings.AGENT_WORKER_CONCURRENCY)
        await super().__call__(scope, receive, send)

    async def dispatch(self, message):
        # Channels' own dispatch first closes stale database connections in the ORM's one thread, a
        # thread hop before every run that queues behind every other ORM call of the process. A
        # run touches the database only through database_sync_to_async (sandbox.tools), which
        # closes stale connections around each call itself, so the hop bought nothing here.
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def agent_run(self, message):
        payload = message["run"]
        run_id = payload["run_id"]
        ensure_reaper()
        # Listen for aborts before claiming: once claimed the run shows as running, and an abort
        # sent then goes only to the control group. Messages reach this consumer one at a time, so
        # an abort that arrives now is handled after the task below exists.
        await self.channel_layer.group_add(control_group(run_id), self.channel_name)
        # From the claim on the run is leased to this worker, so if the worker dies the run is
        # failed by a reaper instead of hanging.
        try:
            claimed = await get_board().claim(run_id, self.worker_id, settings.AGENT_RUN_LEASE_SECONDS)
        except BaseException:
            await self.channel_layer.group_discard(control_group(run_id), self.channel_name)
            raise
        if not claimed:
            await self.channel_layer.group_discard(control_group(run_id), self.channel_name)
            await release_session(payload)
            return
        control = RunControl()
        self.tasks[run_id] = (asyncio.create_task(self._run(payload, control), name=f"run-{run_id}"), control)

    async def _run(self, payload, control):
        run_id = payload["run_id"]
        # The lease is renewed from the claim on, also while the run waits for a free slot.
        beat = asyncio.create_task(heartbeat(run_id))
        try:
            async with self.slots:
                await execute_run(payload, control)
        finally:
            beat.cancel()
            self.tasks.pop(run_id, None)
            await self.channel_layer.group_discard(control_group(run_id), self.channel_name)
            await release_session(payload)

    async def run_abort(self, message):
        entry = self.tasks.get(message["run_id"])
        if entry is not None:
            task, control = entry
            control.aborted = True
            task.cancel()


def _ensure_embedded_worker(layer) -> None:
    from channels.routing import ChannelNameRouter
    from channels.worker import Worker

    loop = asyncio.get_running_loop()
    task = _embedded.get(loop)
    if task is None or task.done():
        worker = Worker(ChannelNameRouter({RUNS_CHANNEL: AgentRunConsumer.as_asgi()}), [RUNS_CHANNEL], layer)
        # A context of its own, like every long-lived task of the runtime: the one that happens to
        # start it may be a Django request's, whose per-request thread executor (which
        # database_sync_to_async uses) is shut down when its response has gone.
        _embedded[loop] = loop.create_task(worker.arun(), name="exoclaw-embedded-agent-worker",
                                           context=contextvars.Context())


async def reap_once() -> list[str]:
    """End the runs whose lease lapsed; returns their ids."""
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
        if await publish(run_id, {"type": "error", "reason": reason, "message": message}, terminal="error") is not None:
            count_run(run["payload"], "lost")
        ended.append(run_id)
        log.warning("run %s ended: %s", run_id, reason)
        await release_session(run["payload"])
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
        _reapers[loop] = loop.create_task(_reap_forever(), name="exoclaw-run-reaper", context=contextvars.Context())
