"""The async tool API the agent runtime uses: list the enabled tools, call one.

    tools = await list_tools()                       # [ToolSpec(plugin, name, description, input_schema)]
    result = await call_tool("calc", "calc", {"expr": "6*7"}, grant_scope="demo")
    result.content == "42"; result.is_error is False

Which tools an agent may use is the caller's decision (its allowlist); the sandbox only needs the
grant scope, the agent whose grant applies (None: the plug-in's default grant).

A failing plug-in never raises here: its failure comes back as a ToolResult with is_error=True,
error_kind set (one of sandbox.errors.KINDS) and content "kind: message". Cancelling the task that
awaits call_tool stops the plug-in promptly and raises CancelledError; setting the `cancel` event
instead returns a ToolResult with error_kind "cancelled".
"""

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async

from common import metrics
from common.tools import ToolResult

from .abi import CHANNEL_ADAPTER, ToolDef, decode_result, encode_call
from .errors import SandboxError
from .host import PluginSpec
from .manifest import Grant, effective_grant
from .process_host import get_host

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ToolSpec:
    """A tool a plug-in offers, named `plugin.tool` (`qualified_name`)."""

    plugin: str
    name: str
    description: str
    input_schema: dict

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}"


@database_sync_to_async
def list_tools() -> list[ToolSpec]:
    """Every enabled plug-in's tools (channel adapters offer none), sorted by plug-in then discovery order."""
    from .models import Plugin

    return [
        ToolSpec(plugin.name, tool["name"], tool.get("description", ""), tool.get("input_schema", {}))
        for plugin in Plugin.objects.filter(enabled=True).exclude(abi=CHANNEL_ADAPTER).order_by("name")
        for tool in plugin.tools
    ]


@dataclass(frozen=True)
class _Target:
    spec: PluginSpec
    grant: Grant
    abi: str
    tool: ToolDef


def _load_plugin(plugin_name: str):
    from .models import Plugin

    plugins = Plugin.objects.filter(name=plugin_name, enabled=True)
    plugin = plugins.prefetch_related("grants__agent", "grants__http_secrets").first()
    if plugin is None:
        raise SandboxError("not_found", f"no enabled plugin named {plugin_name!r}")
    return plugin


def _load_target(plugin_name: str, tool_name: str, grant_scope: str | None) -> _Target:
    plugin = _load_plugin(plugin_name)
    tool = next((ToolDef.from_json(t) for t in plugin.tools if t["name"] == tool_name), None)
    if tool is None:
        offered = ", ".join(t["name"] for t in plugin.tools) or "none"
        raise SandboxError("not_found", f"plugin {plugin_name} has no tool {tool_name!r} (it has: {offered})")
    return _Target(plugin.spec(), effective_grant(plugin.grants.all(), grant_scope), plugin.abi, tool)


def _load_export(plugin_name: str, grant_scope: str | None) -> tuple[PluginSpec, Grant]:
    plugin = _load_plugin(plugin_name)
    return plugin.spec(), effective_grant(plugin.grants.all(), grant_scope)


async def call_plugin(
    plugin_name: str, function: str, data: bytes, grant_scope: str | None = None, *, cancel: asyncio.Event | None = None
) -> bytes:
    """Call any export of a registered plugin (a channel adapter's, say) under the grant for `grant_scope`.

    Bytes in, bytes out; failures raise SandboxError (this is not a tool call, so there is no ToolResult)."""
    spec, grant = await database_sync_to_async(_load_export)(plugin_name, grant_scope)
    return (await get_host().call(spec, function, data, grant, cancel=cancel)).output


async def call_tool(
    plugin_name: str,
    tool_name: str,
    arguments: dict,
    grant_scope: str | None = None,
    *,
    cancel: asyncio.Event | None = None,
    on_start: Callable[[], None] | None = None,
) -> ToolResult:
    """Run one tool call in the sandbox under the plug-in's grant for `grant_scope` (an agent's name;
    None: the default grant).

    `on_start` is called on the event loop once the plug-in has started running."""
    start = time.perf_counter()
    outcome = "cancelled"
    try:
        result = await _call_tool(plugin_name, tool_name, arguments, grant_scope, cancel=cancel, on_start=on_start)
        outcome = result.error_kind or ("error" if result.is_error else "ok")
        return result
    finally:
        metrics.TOOL_CALLS.labels(plugin=plugin_name, outcome=outcome).inc()
        metrics.TOOL_CALL_SECONDS.observe(time.perf_counter() - start)


async def _call_tool(
    plugin_name: str,
    tool_name: str,
    arguments: dict,
    grant_scope: str | None,
    *,
    cancel: asyncio.Event | None,
    on_start: Callable[[], None] | None,
) -> ToolResult:
    start = time.perf_counter()
    qualified = f"{plugin_name}.{tool_name}"
    http = ()
    try:
        target = await database_sync_to_async(_load_target)(plugin_name, tool_name, grant_scope)
        try:
            function, data = encode_call(target.abi, target.tool, arguments)
        except ValueError as exc:
            return ToolResult(str(exc), True, None, (time.perf_counter() - start) * 1000)
        out = await get_host().call(target.spec, function, data, target.grant, cancel=cancel, on_start=on_start)
        http = out.http
        content, is_error = decode_result(target.abi, out.output)
    except SandboxError as exc:
        duration = (time.perf_counter() - start) * 1000
        log.warning("tool %s failed after %.1f ms: %s", qualified, duration, exc)
        return ToolResult(str(exc), True, exc.kind, duration, exc.http or http)
    except Exception as exc:  # a plug-in must never take the process down; the cause is logged in full
        duration = (time.perf_counter() - start) * 1000
        log.exception("tool %s failed unexpectedly", qualified)
        return ToolResult(f"plugin_error: unexpected host failure: {exc}", True, "plugin_error", duration)
    duration = (time.perf_counter() - start) * 1000
    log.info("tool %s %s in %.1f ms", qualified, "reported an error" if is_error else "ok", duration)
    return ToolResult(content, is_error, None, duration, http)

