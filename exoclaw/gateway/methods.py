"""The methods the gateway itself provides. Chat and session methods are reserved in the registry and
filled in by the agent runtime and the session store."""

from urllib.parse import urlsplit

from channels.db import database_sync_to_async
from django.conf import settings

import exoclaw
from agents.models import Agent
from routing.resolver import NoRoute, aresolve_route
from sandbox.models import CapabilityGrant, Plugin

from .auth import login
from .context import Context
from .errors import NotFound
from .health import run_health_check
from .limits import Limits
from .registry import Param, method
from .stats import counters, uptime

FIELD = 128  # the routing fields' max_length in routing.models.Binding


@method("ping", scope=None, public=True)
async def ping(ctx: Context) -> str:
    """Answers "pong"; works before authentication."""
    return "pong"


@method("auth", scope=None, public=True, params={"token": Param(str, required=True, max_length=512)})
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


@method("agents.list", scope=None)
async def agents_list(ctx: Context) -> list[dict]:
    """Every agent: name, provider, model, tool allowlist, busy policy and whether it is enabled."""
    return await _agents()


@database_sync_to_async
def _agents() -> list[dict]:
    return list(Agent.objects.order_by("name").values("name", "provider", "model", "tools", "busy_policy", "enabled"))


def grant_summary(g: CapabilityGrant) -> dict:
    """What a grant allows, without values that could be secret: config and secret keys by name only."""
    return {
        "agent": g.agent.name if g.agent else None,
        "hosts": list(g.allowed_hosts),
        "paths": [
            {"host": p["host"], "guest": p.get("guest", p["host"]), "read_only": p.get("read_only", False)}
            for p in g.allowed_paths
        ],
        "memory_mb": g.memory_mb,
        "timeout_ms": g.timeout_ms,
        "max_http_response_bytes": g.max_http_response_bytes,
        "max_concurrency": g.max_concurrency,
        "config_keys": sorted(g.config),
        "secret_keys": sorted(g.secret_env),
    }


@database_sync_to_async
def _plugins() -> list[dict]:
    plugins = Plugin.objects.order_by("name").prefetch_related("grants__agent")
    return [
        {
            "name": p.name,
            "version": p.version,
            "description": p.description,
            "abi": p.abi,
            "enabled": p.enabled,
            "tools": p.tools,
            "grants": [grant_summary(g) for g in p.grants.all()],
        }
        for p in plugins
    ]


@method("plugin.list", scope="admin")
async def plugin_list(ctx: Context) -> list[dict]:
    """Plugins with their tools (input schemas included) and a summary of their grants."""
    return await _plugins()


@method(
    "routing.resolve",
    scope="chat",
    params={f: Param(str, default="", max_length=FIELD) for f in ("channel", "account", "peer", "guild", "team")},
)
async def routing_resolve(ctx: Context, **fields: str) -> dict:
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
