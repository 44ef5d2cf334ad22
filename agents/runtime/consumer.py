"""The agent-run consumer: one class for both modes (see `runs.py`).

Channels creates one instance per worker process for the `agent-runs` channel and feeds it
messages one at a time, so `agent_run` only starts a task and returns: the instance stays free to
take the next run and to handle `run.abort` for the runs it is executing.
"""

import asyncio
import os
import socket
import uuid

from channels.consumer import AsyncConsumer, get_handler_name
from django.conf import settings

from .execute import RunControl, execute_run, heartbeat, release_and_continue
from .reaper import ensure_reaper
from .runs import control_group, get_board


class AgentRunConsumer(AsyncConsumer):
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
        # Listen for aborts before claiming: once claimed the run shows as running, and a chat.abort
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
            await release_and_continue(payload)
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

    async def run_abort(self, message):
        entry = self.tasks.get(message["run_id"])
        if entry is not None:
            task, control = entry
            control.aborted = True
            task.cancel()
