"""Counting webhook requests by channel and by how the ingress answered (`exoclaw_webhook_events_total`),
around the view rather than inside it, from the JSON every answer of `views.hook` carries."""

import functools
import json

from common import metrics

UNKNOWN_CHANNEL = "unknown"


def outcome(response) -> str:
    """accepted, duplicate, skipped, or the error the answer names (unauthorized, payload_too_large, …)."""
    try:
        body = json.loads(response.content)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return f"http_{response.status_code}"
    if body.get("ok"):
        return "duplicate" if body.get("duplicate") else "skipped" if body.get("skipped") else "accepted"
    return str(body.get("error") or f"http_{response.status_code}")


def counted(view):
    @functools.wraps(view)
    async def counting(request, channel: str):
        response = await view(request, channel)
        # Only channels that exist get their own series: a scan of made-up names must not grow the metrics.
        label = UNKNOWN_CHANNEL if response.status_code in (404, 405) else channel
        metrics.WEBHOOK_EVENTS.labels(channel=label, status=outcome(response)).inc()
        return response

    return counting
