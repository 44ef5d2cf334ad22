"""The routing app's gateway method: `routing.resolve` (docs/protocol.md)."""

from common.routefields import FIELD_MAX_LENGTH, MATCH_FIELDS
from exoclaw.gateway.errors import NotFound
from exoclaw.gateway.registry import Param, method

from .resolver import NoRoute, aresolve_route


@method("routing.resolve", scope="chat",
        params={f: Param(str, default="", max_length=FIELD_MAX_LENGTH) for f in MATCH_FIELDS})
async def routing_resolve(ctx, **fields: str) -> dict:
    """Which agent answers a message with these fields, which binding chose it, and why."""
    try:
        route = await aresolve_route(**fields)
    except NoRoute as e:
        raise NotFound(str(e), reason="no_route") from None
    return {
        "agent": route.agent,
        "binding": route.binding_id,
        "level": route.level,
        "reason": route.reason,
        "session_key": route.session_key,
    }
