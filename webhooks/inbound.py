"""Inbound events after the webhook has answered: run the agent, deliver its reply, and take over
the events of a process that stopped.

Runs as a task on the event loop that served the webhook; every outcome lands on the
`InboundEvent` row (and on the run in the session store), so nothing fails silently.
"""

import asyncio
import contextvars
import json
import logging
import os
import socket
import uuid
import weakref
from datetime import timedelta

import httpx
from channels.db import aclose_old_connections
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from agents.store import get_store
from routing.resolver import Message

from . import adapter, replay
from .delivery import DeliveryError, RetryPolicy, send
from .messages import AdapterOutputError, parse_outgoing_output
from .models import InboundEvent
from .endpoints import get_endpoint
from .runs import run_agent

log = logging.getLogger(__name__)
Status = InboundEvent.Status

# The error of an event whose reply was kept on purpose: its channel has nowhere to send it.
KEPT_NOT_SENT = "the channel has no api_base_url, so replies are kept, not sent"

_tasks: set[asyncio.Task] = set()
retry_policy = RetryPolicy()


PROCESS = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
_handling: set[int] = set()
_keepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def lease_until():
    # An event whose lease has run out belongs to a process that stopped: the next process to check takes it over.
    return timezone.now() + timedelta(seconds=settings.WEBHOOK_LEASE_SECONDS)


def start(event: InboundEvent, content: str) -> None:
    """Run the agent for `event` (its endpoint, adapter and grants loaded) in the background; the
    event must carry this process's lease (see `views.hook`)."""
    _handling.add(event.pk)
    _spawn(_guarded(event, content))
    ensure_keeper()


def _spawn(work) -> None:
    # A context of its own: the request's carries asgiref's per-request thread executor, which is shut
    # down when the response has gone, and the run must still reach the database after that.
    task = asyncio.get_running_loop().create_task(work, context=contextvars.Context())
    # The loop keeps only weak references to tasks; this set keeps them alive until they finish.
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def ensure_keeper() -> None:
    """Start this process's lease keeper (renewing its events' leases, taking over lapsed ones) once."""
    loop = asyncio.get_running_loop()
    task = _keepers.get(loop)
    if task is None or task.done():
        _keepers[loop] = loop.create_task(_keep_forever(), name="exoclaw-webhook-leases", context=contextvars.Context())


async def _keep_forever() -> None:
    while True:
        try:
            # This task's queries run outside any request, where Django would recycle the connection.
            await aclose_old_connections()
            await keep_once()
        except Exception:
            log.exception("renewing or taking over inbound events failed; trying again")
        await asyncio.sleep(settings.WEBHOOK_LEASE_SECONDS / 3)


async def keep_once() -> list[int]:
    """Renew the leases of the events this process handles, then take over the events whose lease ran
    out; returns the ids of those taken over."""
    if _handling:
        mine = InboundEvent.objects.filter(pk__in=list(_handling), status=Status.ACCEPTED, owner=PROCESS)
        await mine.aupdate(lease_until=lease_until())
    await replay.purge()
    lapsed = InboundEvent.objects.filter(status=Status.ACCEPTED, lease_until__lt=timezone.now())
    taken = []
    async for pk, lease, owner in lapsed.values_list("pk", "lease_until", "owner")[:50]:
        # The lease as read is the condition: of several processes checking at once, one wins.
        if await InboundEvent.objects.filter(pk=pk, status=Status.ACCEPTED, lease_until=lease).aupdate(
            owner=PROCESS, lease_until=lease_until()
        ):
            taken.append(pk)
            try:
                await _take_over(pk, owner)
            except Exception:
                log.exception("taking over inbound event %s failed; its lease will lapse again", pk)
    return taken


async def _take_over(pk: int, stopped: str) -> None:
    event = await InboundEvent.objects.select_related("endpoint").aget(pk=pk)
    log.warning("channel %s: taking over inbound event %s from %s, which stopped", event.endpoint.name, pk, stopped)
    endpoint = await get_endpoint(event.endpoint.name)
    if endpoint is None:
        await _finish(event, Status.FAILED, "taken over from a stopped process, but the channel is disabled now")
        return
    event.endpoint = endpoint
    if not event.content:
        await _finish(event, Status.FAILED, "the process handling this message stopped, and its text was not kept")
        return
    # The same idempotency key: the run the stopped process started is followed, not started again.
    start(event, event.content)


def _mine(pk: int):
    # An event without an owner was never leased (made before leases existed): whoever has it, holds it.
    return InboundEvent.objects.filter(Q(owner=PROCESS) | Q(owner=""), pk=pk)


async def still_mine(event: InboundEvent) -> bool:
    """Whether this process still holds the event: one whose lease lapsed (a stall, a database outage)
    may have been taken over by another process, which then answers it instead."""
    return await _mine(event.pk).filter(status=Status.ACCEPTED).aexists()


async def idle() -> None:
    """Wait until every message this process has dispatched is finished."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)


async def _finish(event: InboundEvent, status: str, error: str = "") -> None:
    """Record the event's outcome, unless another process has taken the event over meanwhile."""
    event.status, event.error, event.finished = status, error, timezone.now()
    await _mine(event.pk).aupdate(
        status=status, error=error, finished=event.finished, delivery_attempts=event.delivery_attempts,
        run_id=event.run_id, agent=event.agent, session_key=event.session_key, content="", owner="", lease_until=None,
        reply_ref="",
    )


async def _guarded(event: InboundEvent, content: str) -> None:
    # A background task has no caller to raise to: whatever goes wrong is logged and kept on the event.
    try:
        await process(event, content)
    except Exception as e:
        log.exception("inbound event %s failed", event.pk)
        await _finish(event, Status.FAILED, f"internal error: {e}")
    finally:
        _handling.discard(event.pk)


async def process(event: InboundEvent, content: str) -> None:
    channel = event.endpoint.name
    # Per message, also for platforms that send no update id: a process taking the event over
    # follows the run this key started rather than starting another.
    route = Message(channel=channel, account=event.account, peer=event.peer, guild=event.guild, team=event.team)
    outcome = await run_agent(
        content, route, idempotency_key=event.update_id or f"event-{event.pk}"
    )
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


class _NotMine(Exception):
    """Another process took the event over; it sends the reply."""


class _ReplyFailed(Exception):
    """The reply could not be formatted or delivered; the message says why, without the token."""

    def __init__(self, message: str, attempts: int = 0):
        super().__init__(message)
        self.attempts = attempts


async def _send_reply(event: InboundEvent, text: str, policy: RetryPolicy | None, *, leased: bool = True) -> int:
    """Format `text` through the adapter and send it; the number of attempts it took."""
    endpoint = event.endpoint
    if not endpoint.api_base_url:
        raise _ReplyFailed(KEPT_NOT_SENT)
    reply = {"content": text, "account": event.account, "peer": event.peer}
    for name in ("guild", "team", "reply_ref"):
        if getattr(event, name):
            reply[name] = getattr(event, name)
    if event.message_id:
        reply["reply_to"] = event.message_id
    try:
        requests = parse_outgoing_output(await adapter.call(endpoint.adapter, "format_outgoing", json.dumps(reply).encode()))
    except (adapter.AdapterFailed, AdapterOutputError) as e:
        raise _ReplyFailed(f"the reply could not be formatted: {e}") from None
    token = os.environ.get(endpoint.token_env, "") if endpoint.token_env else ""
    secret = os.environ.get(endpoint.secret_env, "")
    if leased and not await still_mine(event):
        raise _NotMine()
    attempts = 0
    try:
        async with httpx.AsyncClient() as client:
            for request in requests:
                attempts += await send(
                    client, request, base_url=endpoint.api_base_url, token=token, secret=secret,
                    policy=policy or retry_policy,
                )
    except DeliveryError as e:
        raise _ReplyFailed(f"the reply could not be delivered: {e}", attempts + e.attempts) from None
    return attempts


async def deliver_reply(event: InboundEvent, text: str, policy: RetryPolicy | None = None) -> None:
    """Format `text` through the adapter and send it; record the outcome on `event`."""
    try:
        event.delivery_attempts += await _send_reply(event, text, policy)
    except _NotMine:
        log.warning("channel %s: inbound event %s was taken over by another process; it sends the reply",
                    event.endpoint.name, event.pk)
        return
    except _ReplyFailed as e:
        event.delivery_attempts += e.attempts
        await _finish(event, Status.UNDELIVERED, str(e))
        return
    await _finish(event, Status.REPLIED)


def answer_refused(event: InboundEvent, text: str) -> None:
    """Send a refused sender `text` (their pairing code) in the background; the event stays refused."""
    _spawn(_answer_refused(event, text))


async def _answer_refused(event: InboundEvent, text: str) -> None:
    try:
        event.delivery_attempts += await _send_reply(event, text, None, leased=False)
        note = "; the pairing code was sent"
    except _ReplyFailed as e:
        event.delivery_attempts += e.attempts
        note = f"; the pairing code was not sent: {e}"
    except Exception as e:
        log.exception("channel %s: sending the pairing code of event %s failed", event.endpoint.name, event.pk)
        note = f"; the pairing code was not sent: internal error: {e}"
    await InboundEvent.objects.filter(pk=event.pk).aupdate(error=event.error + note, delivery_attempts=event.delivery_attempts)
