"""After the webhook has answered: route the message, run the agent, deliver its reply.

Runs as a task on the event loop that served the webhook; every outcome lands on the
`InboundEvent` row (and on the run in the session store), so nothing fails silently.
"""

import asyncio
import json
import logging
import os

import httpx
from django.utils import timezone

from routing.resolver import NoRoute, aresolve_route

from . import adapter
from .delivery import DeliveryError, RetryPolicy, send
from .messages import AdapterOutputError, parse_outgoing_output
from .models import InboundEvent

log = logging.getLogger(__name__)
Status = InboundEvent.Status

_tasks: set[asyncio.Task] = set()
retry_policy = RetryPolicy()


def start(event_id: int, content: str) -> None:
    task = asyncio.get_running_loop().create_task(process(event_id, content))
    # The loop keeps only weak references to tasks; this set keeps them alive until they finish.
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


async def idle() -> None:
    """Wait until every dispatched message of this process is finished (tests and shutdown)."""
    while _tasks:
        await asyncio.gather(*list(_tasks), return_exceptions=True)


async def _finish(event: InboundEvent, status: str, error: str = "") -> None:
    event.status, event.error, event.finished = status, error, timezone.now()
    await event.asave(update_fields=["status", "error", "finished", "delivery_attempts", "run_id"])


async def process(event_id: int, content: str) -> None:
    event = await InboundEvent.objects.select_related("endpoint__adapter").aget(pk=event_id)
    try:
        route = await aresolve_route(
            channel=event.endpoint.name, account=event.account, peer=event.peer, guild=event.guild, team=event.team
        )
    except NoRoute as e:
        await _finish(event, Status.FAILED, str(e))
        return
    event.agent, event.session_key, event.status = route.agent, route.session_key, Status.RUNNING
    await event.asave(update_fields=["agent", "session_key", "status"])
    try:
        from .runs import run_agent

        run_id, reply, error = await run_agent(event, route, content)
    except Exception as e:
        log.exception("channel %s: the run for event %s failed", event.endpoint.name, event.pk)
        await _finish(event, Status.FAILED, f"the run failed: {e}")
        return
    event.run_id = run_id
    if error:
        await _finish(event, Status.FAILED, error)
    elif not reply:
        await _finish(event, Status.NO_REPLY)
    else:
        await deliver_reply(event, reply)


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
