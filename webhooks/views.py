"""`POST /hooks/<channel>/`: the webhook ingress. Thin glue around the pure checks.

Order matters: size (already bounded while the body streamed in, `exoclaw.bodylimit`), then
authenticity and freshness (constant time), then replay, then JSON, then the adapter in the sandbox,
then the sender policy and the persistent dedupe record. Only then is anything stored or run, and
the answer goes back at once while the agent runs in the background. The answer is the adapter's
`respond` when it gave one (Slack's challenge, Discord's PONG or deferral), else exoclaw's own.
"""

import logging
import os
import time

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import adapter, inbound, jsonbody, replay, senders
from .endpoints import get_endpoint
from .messages import AdapterOutputError, Skipped, dedupe_key, parse_incoming_output
from .models import ChannelEndpoint, InboundEvent
from .signatures import Unauthentic, authenticate

log = logging.getLogger(__name__)


def _error(status: int, reason: str, message: str) -> JsonResponse:
    return JsonResponse({"ok": False, "error": reason, "message": message}, status=status)


def _too_large(endpoint: ChannelEndpoint) -> JsonResponse:
    return _error(413, "payload_too_large", f"The body is larger than {endpoint.max_body_bytes} bytes.")


def _declared_length(request) -> int:
    try:
        return int(request.headers.get("Content-Length") or 0)
    except ValueError:
        return 0


@csrf_exempt
@require_POST
async def hook(request, channel: str):
    # A server that was restarted starts taking over what its predecessor left unfinished here.
    inbound.ensure_keeper()
    endpoint = await get_endpoint(channel)
    if endpoint is None:
        return _error(404, "not_found", f"No enabled channel named {channel!r}.")
    if _declared_length(request) > endpoint.max_body_bytes:
        return _too_large(endpoint)
    try:
        body = request.body
    except RequestDataTooBig:
        return _too_large(endpoint)
    if len(body) > endpoint.max_body_bytes:
        return _too_large(endpoint)

    secret = os.environ.get(endpoint.secret_env, "")
    if not secret:
        log.warning("channel %s: refusing a webhook because %s is not set", endpoint.name, endpoint.secret_env)
    try:
        replay_key = authenticate(endpoint.auth, secret, request.headers, body, time.time())
    except Unauthentic as e:
        if e.reason == "no_secret" and secret:
            log.warning("channel %s: %s", endpoint.name, e)
        return _unauthorized(e.reason, str(e))
    if replay_key and not await replay.first_time(endpoint, replay_key):
        return _unauthorized("replayed", "This signed request was received before; sign every request afresh.")

    try:
        jsonbody.parse(body)
    except jsonbody.MalformedBody as e:
        return _error(400, "malformed", str(e))
    try:
        parsed = parse_incoming_output(
            await adapter.call(endpoint.adapter, "parse_incoming", body), default_account=endpoint.account
        )
    except adapter.AdapterFailed as e:
        if e.kind == "plugin_error":
            return _error(400, "malformed", str(e))
        return await _adapter_crashed(endpoint, str(e))
    except AdapterOutputError as e:
        # What the adapter read from this request is unusable (an empty peer, a 500-character id):
        # the request is at fault, and a 5xx would only make the platform send it again and again.
        log.warning("channel %s: %s.parse_incoming: %s", endpoint.name, endpoint.adapter.name, e)
        return _error(400, "malformed", f"{endpoint.adapter.name}.parse_incoming: {e}")
    if isinstance(parsed, Skipped):
        return _answer(parsed.respond, {"ok": True, "skipped": parsed.reason or True})

    decision = await senders.decide(endpoint, parsed.sender)
    fields = dict(
        endpoint=endpoint,
        update_id=dedupe_key(parsed.update_id),
        account=parsed.account,
        peer=parsed.peer,
        guild=parsed.guild,
        team=parsed.team,
        sender=parsed.sender,
        message_id=parsed.message_id,
    )
    if decision.allowed:
        fields.update(
            content=parsed.content, reply_ref=parsed.reply_ref, owner=inbound.PROCESS, lease_until=inbound.lease_until()
        )
    else:
        # Recorded, finished at once and never leased: no process will ever run it.
        fields.update(status=InboundEvent.Status.REFUSED, error=decision.reason, finished=timezone.now())
    try:
        event = await InboundEvent.objects.acreate(**fields)
    except IntegrityError:
        return _answer(parsed.respond, {"ok": True, "duplicate": True})
    if decision.allowed:
        inbound.start(event, parsed.content)
        return _answer(parsed.respond, {"ok": True, "event": event.pk})
    log.info("channel %s: refused a message: %s", endpoint.name, decision.reason)
    if decision.pairing is not None and await senders.claim_reply(decision.pairing):
        event.reply_ref = parsed.reply_ref
        inbound.answer_refused(event, senders.pairing_reply(decision.pairing.code))
    return _answer(parsed.respond, {"ok": True, "refused": True, "event": event.pk})


def _answer(respond: dict | None, ours: dict) -> JsonResponse:
    # The platform's own handshake or acknowledgement when the adapter asked for one.
    return JsonResponse(respond if respond is not None else ours)


def _unauthorized(reason: str, message: str) -> JsonResponse:
    return JsonResponse({"ok": False, "error": "unauthorized", "reason": reason, "message": message}, status=401)


async def _adapter_crashed(endpoint: ChannelEndpoint, message: str) -> JsonResponse:
    # Not the sender's fault, so not a 4xx; kept as a failed event so operators see it in the admin.
    log.error("channel %s: %s", endpoint.name, message)
    await InboundEvent.objects.acreate(endpoint=endpoint, status=InboundEvent.Status.FAILED, error=message)
    return _error(500, "adapter_failed", message)
