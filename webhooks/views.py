"""`POST /hooks/<channel>/`: the webhook ingress. Thin glue around the pure checks.

Order matters: size, then authenticity (constant time), then JSON, then the adapter in the sandbox,
then the persistent dedupe record. Only then is anything stored or run, and the answer goes back
at once while the agent runs in the background.
"""

import json
import logging
import os

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from . import adapter, inbound
from .endpoints import get_endpoint
from .messages import AdapterOutputError, Skipped, dedupe_key, parse_incoming_output
from .models import ChannelEndpoint, InboundEvent
from .signatures import is_authentic

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
    if not is_authentic(endpoint.auth, secret, request.headers, body):
        return _error(401, "unauthorized", "The request's signature or secret token is missing or wrong.")

    try:
        json.loads(body)
    except ValueError:
        return _error(400, "malformed", "The body is not JSON.")
    try:
        parsed = parse_incoming_output(
            await adapter.call(endpoint.adapter, "parse_incoming", body), default_account=endpoint.account
        )
    except adapter.AdapterFailed as e:
        if e.kind == "plugin_error":
            return _error(400, "malformed", str(e))
        return await _adapter_crashed(endpoint, str(e))
    except AdapterOutputError as e:
        return await _adapter_crashed(endpoint, f"{endpoint.adapter.name}.parse_incoming: {e}")
    if isinstance(parsed, Skipped):
        return JsonResponse({"ok": True, "skipped": parsed.reason or True})

    try:
        event = await InboundEvent.objects.acreate(
            endpoint=endpoint,
            update_id=dedupe_key(parsed.update_id),
            account=parsed.account,
            peer=parsed.peer,
            guild=parsed.guild,
            team=parsed.team,
            message_id=parsed.message_id,
            content=parsed.content,
            owner=inbound.PROCESS,
            lease_until=inbound.lease_until(),
        )
    except IntegrityError:
        return JsonResponse({"ok": True, "duplicate": True})
    inbound.start(event, parsed.content)
    return JsonResponse({"ok": True, "event": event.pk})


async def _adapter_crashed(endpoint: ChannelEndpoint, message: str) -> JsonResponse:
    # Not the sender's fault, so not a 4xx; kept as a failed event so operators see it in the admin.
    log.error("channel %s: %s", endpoint.name, message)
    await InboundEvent.objects.acreate(endpoint=endpoint, status=InboundEvent.Status.FAILED, error=message)
    return _error(500, "adapter_failed", message)
