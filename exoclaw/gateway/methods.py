"""The methods the gateway itself provides: `ping`, `auth` and `status`. Every other method is
registered by the app that owns it, from its `rpc.py`."""

from urllib.parse import urlsplit

from django.conf import settings

import exoclaw

from .auth import login
from .context import Context
from .health import run_health_check
from .limits import Limits
from .registry import Param, method
from .stats import counters, uptime


@method("ping", scope=None, public=True)
async def ping(ctx: Context) -> str:
    """Answers "pong"; works before authentication."""
    return "pong"


@method("auth", scope=None, public=True, params={"token": Param(str, required=True, max_length=512, text=False)})
async def auth(ctx: Context, *, token: str) -> dict:
    """Authenticate this connection with an API token."""
    ctx.principal = await login(token, ctx.client, Limits.from_settings())
    return {"principal": ctx.principal.name, "scopes": sorted(ctx.principal.scopes)}


def channel_layer_kind() -> str:
    backend = settings.CHANNEL_LAYERS.get("default", {}).get("BACKEND", "")
    return {"channels.layers.InMemoryChannelLayer": "in-memory", "channels_redis.core.RedisChannelLayer": "redis"}.get(
        backend, backend
    )


@method("status", scope=None)
async def status(ctx: Context) -> dict:
    """Version, uptime, connections, runs, channel layer and session store."""
    return {
        "version": exoclaw.__version__,
        "uptime_s": round(uptime(), 3),
        "connections": counters.connections,
        "active_runs": counters.active_runs,
        "channel_layer": channel_layer_kind(),
        "store": {"scheme": urlsplit(settings.SURREALDB_URL).scheme, "health": await run_health_check("store")},
        "principal": ctx.principal.name,
        "connection": ctx.connection_id,
    }
