"""The sandbox's gateway method: `plugin.list` (docs/protocol.md)."""

from channels.db import database_sync_to_async

from exoclaw.gateway.registry import method

from .models import CapabilityGrant, Plugin


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
        "http_secret_hosts": sorted({s.host for s in g.http_secrets.all()}),
        "http_requests_per_call": g.http_requests_per_call,
        "http_requests_per_minute": g.http_requests_per_minute,
    }


@database_sync_to_async
def _plugins() -> list[dict]:
    plugins = Plugin.objects.order_by("name").prefetch_related("grants__agent", "grants__http_secrets")
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
async def plugin_list(ctx) -> list[dict]:
    """Plugins with their tools (input schemas included) and a summary of their grants."""
    return await _plugins()
