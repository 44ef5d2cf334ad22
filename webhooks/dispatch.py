"""After the webhook has answered: route the message, run the agent, deliver its reply.

Runs as a task on the event loop that served the webhook; every outcome lands on the
`InboundEvent` row (and on the run in the session store), so nothing fails silently.
"""

import asyncio
import contextvars
import json
import logging
import os
import time
from datetime import timedelta

import httpx
from django.utils import timezone

from agents.store import get_store

from . import adapter
from .delivery import DeliveryError, RetryPolicy, send
from .messages import AdapterOutputError, parse_outgoing_output
from .models import InboundEvent
from .runs import RUN_WAIT_SECONDS, run_agent

log = logging.getLogger(__name__)
Status = InboundEvent.Status

_tasks: set[asyncio.Task] = set()
retry_policy = RetryPolicy()


# No process still works on a message accepted this long ago: a run is awaited RUN_WAIT_SECONDS at
# most and a reply's delivery gives up within minutes, so the process handling it stopped on the way.
STALE_AFTER = timedelta(seconds=RUN_WAIT_SECONDS) + timedelta(minutes=30)
SWEEP_EVERY_SECONDS = 60.0
_last_sweep = float("-inf")


def start(event: InboundEvent, content: str) -> None:
    """Run the agent for `event` (its endpoint, adapter and grants loaded) in the background."""
    global _last_sweep
    _spawn(_guarded(event, content))
    if time.monotonic() - _last_sweep >= SWEEP_EVERY_SECONDS:
        _last_sweep = time.monotonic()
        _spawn(_swept())


def _spawn(work) -> None:
    # A context of its own: the request's carries asgiref's per-request thread executor, which is shut
    # down when the response has gone, and the run must still reach the database after that.
    task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
    # The loop keeps only weak references to tasks; this set keeps them alive until they finish.
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def sweep_stale(now=None) -> int:
    """Mark as failed the accepted events that no process will finish any more; how many there were."""
    now = now or timezone.now()
    return await InboundEvent.objects.filter(status=Status.ACCEPTED, received__lt=now - STALE_AFTER).aupdate(
        status=Status.FAILED,
        finished=now,
        error="the server process handling this message stopped before its run and reply were finished "
        "(the conversation so far is in the session history)",
    )


async def _swept() -> None:
    try:
        if swept := await sweep_stale():
            log.warning("%d inbound event(s) left unfinished by a stopped process were marked failed", swept)
    except Exception:
        log.exception("marking unfinished inbound events as failed failed; trying again later")


async def idle() -> None:
    """Wait until every message this process has dispatched is finished."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)


async def _finish(event: InboundEvent, status: str, error: str = "") -> None:
    event.status, event.error, event.finished = status, error, timezone.now()
    await event.asave(
        update_fields=["status", "error", "finished", "delivery_attempts", "run_id", "agent", "session_key"]
    )


async def _guarded(event: InboundEvent, content: str) -> None:
    # A background task has no caller to raise to: whatever goes wrong is logged and kept on the event.
    try:
        await process(event, content)
    except Exception as e:
        log.exception("inbound event %s failed", event.pk)
        await InboundEvent.objects.filter(pk=event.pk).aupdate(
            status=Status.FAILED, error=f"internal error: {e}", finished=timezone.now()
        )


async def process(event: InboundEvent, content: str) -> None:
    channel = event.endpoint.name
    outcome = await run_agent(
        text=content, channel=channel, account=event.account, peer=event.peer, guild=event.guild,
        team=event.team, idempotency_key=f"webhook:{channel}:{event.update_id}" if event.update_id else "",
    )  # fmt: skip
    event.run_id, event.agent, event.session_key = outcome.run_id, outcome.agent, outcome.session_key
    if outcome.error:
        log.warning("channel %s: inbound event %s: %s", channel, event.pk, outcome.error)
        await _finish(event, Status.FAILED, outcome.error)
    elif not outcome.reply:
        await _finish(event, Status.NO_REPLY)
    else:
        await deliver_reply(event, outcome.reply)
        if event.status == Status.UNDELIVERED and event.run_id:
            await _record_on_run(event)


async def _record_on_run(event: InboundEvent) -> None:
    try:
        await get_store().update_run(event.run_id, error=f"reply not delivered to {event.endpoint.name}: {event.error}")
    except Exception:
        log.exception("channel %s: could not record the undelivered reply on run %s", event.endpoint.name, event.run_id)


async def deliver_reply(event: InboundEvent, text: str, policy: RetryPolicy | None = None) -> None:
    """Format `text` through the adapter and send it; record the outcome on `event`."""
    endpoint = event.endpoint
    if not endpoint.api_base_url:
        await _finish(event, Status.UNDELIVERED, "the channel has no api_base_url, so replies are not sent")
        return
    reply = {"content": text, "account": event.account, "peer": event.peer}
    if event.guild:
        reply["guild"] = event.guild
    if event.team:
        reply["team"] = event.team
    if event.message_id:
        reply["reply_to"] = event.message_id
    try:
        requests = parse_outgoing_output(await adapter.call(endpoint.adapter, "format_outgoing", json.dumps(reply).encode()))
    except (adapter.AdapterFailed, AdapterOutputError) as e:
        await _finish(event, Status.UNDELIVERED, f"the reply could not be formatted: {e}")
        return
    token = os.environ.get(endpoint.token_env, "") if endpoint.token_env else ""
    secret = os.environ.get(endpoint.secret_env, "")
    try:
        async with httpx.AsyncClient() as client:
            for request in requests:
                event.delivery_attempts += await send(
                    client,
                    request,
                    base_url=endpoint.api_base_url,
                    token=token,
                    secret=secret,
                    policy=policy or retry_policy,
                )
    except DeliveryError as e:
        event.delivery_attempts += e.attempts
        await _finish(event, Status.UNDELIVERED, f"the reply could not be delivered: {e}")
        return
    await _finish(event, Status.REPLIED)
