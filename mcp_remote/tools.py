"""The remote MCP servers' tools as the agent runtime uses them, shaped like `sandbox.tools`:

    tools = await list_tools()        # [RemoteTool(server, name, description, input_schema)]
    result = await call_tool("github", "search", {"q": "exoclaw"})
    result.content, result.is_error, result.error_kind, result.duration_ms

Only the tools a server row allows (`allowed_tools`) are listed or called; which of them an agent
may use is its allowlist's business (agents/runtime/tools.py). A failure never raises: it comes back
with is_error and an error_kind (timeout, host_denied, not_found, invalid_output, remote_error).
Cancelling the awaiting task closes the connection and raises CancelledError.
"""

import logging
import os
import time
from dataclasses import dataclass

from channels.db import database_sync_to_async

from common.tools import ToolResult

from .endpoint import RemoteError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RemoteTool:
    server: str
    name: str
    description: str
    input_schema: dict

    @property
    def qualified_name(self) -> str:
        return f"{self.server}.{self.name}"


@database_sync_to_async
def list_tools() -> list[RemoteTool]:
    """The allowed tools of every enabled server, as each listed them when its row was saved."""
    from .models import McpServer

    return [
        RemoteTool(server.name, t["name"], t.get("description", ""), t.get("input_schema") or {})
        for server in McpServer.objects.filter(enabled=True).order_by("name")
        for t in server.tools
        if server.allows(t["name"])
    ]


@database_sync_to_async
def _endpoint(server_name: str, tool: str):
    from .models import McpServer

    server = McpServer.objects.filter(name=server_name, enabled=True).first()
    if server is None:
        raise RemoteError("not_found", f"no enabled MCP server named {server_name!r}")
    if not server.allows(tool):
        raise RemoteError("not_found", f"MCP server {server_name} offers no tool {tool!r} to agents")
    return server.endpoint()


async def call_tool(server_name: str, tool: str, arguments: dict) -> ToolResult:
    from .client import call_remote_tool

    start = time.perf_counter()
    qualified = f"{server_name}.{tool}"
    try:
        endpoint = await _endpoint(server_name, tool)
        content, is_error = await call_remote_tool(endpoint, tool, arguments, os.environ)
    except RemoteError as e:
        duration = (time.perf_counter() - start) * 1000
        log.warning("tool %s failed after %.1f ms: %s", qualified, duration, e)
        return ToolResult(str(e), True, e.kind, duration)
    duration = (time.perf_counter() - start) * 1000
    log.info("tool %s %s in %.1f ms", qualified, "reported an error" if is_error else "ok", duration)
    return ToolResult(content, is_error, None, duration)
