"""The async tool API the agent runtime uses: list the tools an agent may use, call one.

    tools = await list_tools(agent.tools)            # [ToolSpec(plugin, name, description, input_schema)]
    result = await call_tool("calc", "calc", {"expr": "6*7"}, agent_name="demo")
    result.content == "42"; result.is_error is False

A failing plug-in never raises here: its failure comes back as a ToolResult with is_error=True,
error_kind set (one of sandbox.errors.KINDS) and content "kind: message". Cancelling the task that
awaits call_tool stops the plug-in promptly and raises CancelledError; setting the `cancel` event
instead returns a ToolResult with error_kind "cancelled".
"""

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from channels.db import database_sync_to_async
from django.conf import settings

from .abi import CHANNEL_ADAPTER, ToolDef, decode_result, encode_call
from .errors import SandboxError
from .host import Host, PluginSpec
from .manifest import Grant, effective_grant

log = logging.getLogger(__name__)

_LLM_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class ToolSpec:
    """A tool as the LLM sees it. `llm_name` ("plugin__tool") fits provider tool-name rules."""

    plugin: str
    name: str
    description: str
    input_schema: dict

    @property
    def qualified_name(self) -> str:
        return f"{self.plugin}.{self.name}"

    @property
    def llm_name(self) -> str:
        return _LLM_NAME_UNSAFE.sub("_", f"{self.plugin}__{self.name}")[:64]


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool
    error_kind: str | None
    duration_ms: float


_host: Host | None = None
_host_lock = threading.Lock()


def get_host() -> Host:
    """The process-wide host (one thread pool, one compile cache)."""
    global _host
    with _host_lock:
        if _host is None:
            _host = Host(max_workers=settings.SANDBOX_MAX_WORKERS)
        return _host


def tool_allowed(patterns: list[str], plugin: str, tool: str) -> bool:
    """Whether an agent's allowlist ("*", "plugin", "plugin.tool", "plugin.*") lets it use plugin.tool."""
    return any(p in ("*", plugin, f"{plugin}.*", f"{plugin}.{tool}") for p in patterns)


def list_tools_sync(patterns: list[str]) -> list[ToolSpec]:
    from .models import Plugin

    found = []
    for plugin in Plugin.objects.filter(enabled=True).exclude(abi=CHANNEL_ADAPTER).order_by("name"):
        for tool in plugin.tools:
            if tool_allowed(patterns, plugin.name, tool["name"]):
                found.append(ToolSpec(plugin.name, tool["name"], tool.get("description", ""), tool.get("input_schema", {})))
    return found


async def list_tools(patterns: list[str]) -> list[ToolSpec]:
    """The enabled tools matching an allowlist, sorted by plug-in then discovery order."""
    return await database_sync_to_async(list_tools_sync)(patterns)


@dataclass(frozen=True)
class _Target:
    spec: PluginSpec
    grant: Grant
    abi: str
    tool: ToolDef


def _load_plugin(plugin_name: str, agent_name: str | None):
    from agents.models import Agent

    from .models import Plugin

    plugin = Plugin.objects.filter(name=plugin_name, enabled=True).prefetch_related("grants").first()
    if plugin is None:
        raise SandboxError("not_found", f"no enabled plugin named {plugin_name!r}")
    agent = None
    if agent_name is not None:
        agent = Agent.objects.filter(name=agent_name).first()
        if agent is None:
            raise SandboxError("not_found", f"no agent named {agent_name!r}")
    return plugin, agent


def _load_target(plugin_name: str, tool_name: str, agent_name: str | None) -> _Target:
    plugin, agent = _load_plugin(plugin_name, agent_name)
    tool = next((ToolDef.from_json(t) for t in plugin.tools if t["name"] == tool_name), None)
    if tool is None:
        offered = ", ".join(t["name"] for t in plugin.tools) or "none"
        raise SandboxError("not_found", f"plugin {plugin_name} has no tool {tool_name!r} (it has: {offered})")
    if agent is not None and not tool_allowed(agent.tools, plugin_name, tool_name):
        raise SandboxError("not_found", f"{plugin_name}.{tool_name} is not in agent {agent_name}'s tool allowlist")
    grant = effective_grant(plugin.grants.all(), agent.pk if agent else None)
    return _Target(plugin.spec(), grant, plugin.abi, tool)


def _load_export(plugin_name: str, agent_name: str | None) -> tuple[PluginSpec, Grant]:
    plugin, agent = _load_plugin(plugin_name, agent_name)
    return plugin.spec(), effective_grant(plugin.grants.all(), agent.pk if agent else None)


async def call_plugin(
    plugin_name: str, function: str, data: bytes, agent_name: str | None = None, *, cancel: asyncio.Event | None = None
) -> bytes:
    """Call any export of a registered plugin (a channel adapter's, say) under its effective grant.

    Bytes in, bytes out; failures raise SandboxError (this is not a tool call, so there is no ToolResult)."""
    spec, grant = await database_sync_to_async(_load_export)(plugin_name, agent_name)
    return (await get_host().call(spec, function, data, grant, cancel=cancel)).output


async def call_tool(
    plugin_name: str,
    tool_name: str,
    arguments: dict,
    agent_name: str | None = None,
    *,
    cancel: asyncio.Event | None = None,
    on_start: Callable[[], None] | None = None,
) -> ToolResult:
    """Run one tool call in the sandbox under the effective grant for (plugin, agent).

    `on_start` is called on the event loop once the plug-in has started running."""
    start = time.perf_counter()
    qualified = f"{plugin_name}.{tool_name}"
    try:
        target = await database_sync_to_async(_load_target)(plugin_name, tool_name, agent_name)
        try:
            function, data = encode_call(target.abi, target.tool, arguments)
        except ValueError as exc:
            return ToolResult(str(exc), True, None, (time.perf_counter() - start) * 1000)
        out = await get_host().call(target.spec, function, data, target.grant, cancel=cancel, on_start=on_start)
        content, is_error = decode_result(target.abi, out.output)
    except SandboxError as exc:
        duration = (time.perf_counter() - start) * 1000
        log.warning("tool %s failed after %.1f ms: %s", qualified, duration, exc)
        return ToolResult(str(exc), True, exc.kind, duration)
    except Exception as exc:  # a plug-in must never take the process down; the cause is logged in full
        duration = (time.perf_counter() - start) * 1000
        log.exception("tool %s failed unexpectedly", qualified)
        return ToolResult(f"plugin_error: unexpected host failure: {exc}", True, "plugin_error", duration)
    duration = (time.perf_counter() - start) * 1000
    log.info("tool %s %s in %.1f ms", qualified, "reported an error" if is_error else "ok", duration)
    return ToolResult(content, is_error, None, duration)

