"""The tools one run may call, and calling them: in the sandbox, or on a remote MCP server.

A tool comes from a source: a sandboxed plugin (`sandbox.tools`) or a remote MCP server
(`mcp_remote.tools`, only the tools its row allows). An agent's allowlist (`Agent.tools`) holds
patterns: `source` or `source.*` (every tool of a plugin or MCP server), `source.tool` (one tool)
and `*` (everything). `tool_allowed` is the one place that matches them: a run's `Toolbox` is built
once from the agent snapshot the run was accepted with, and the LLM can reach nothing outside it (it
may invent names; `lookup` finds only what the box holds). Tools are named `source.tool`
throughout; the providers map those names to what their APIs accept
(`agents.providers.base.ToolNameMap`). A plugin and an MCP server cannot share a name (the server's
row refuses it); if one did, the plugin's tools would win.
"""

import asyncio
from dataclasses import dataclass, field

from agents.providers.base import ToolSpec
from mcp_remote import tools as remote
from mcp_remote.tools import RemoteTool
from sandbox.tools import ToolSpec as SandboxTool
from sandbox.tools import call_tool, list_tools

Tool = SandboxTool | RemoteTool


@dataclass
class ToolOutcome:
    content: str
    is_error: bool = False
    error_kind: str | None = None
    duration_ms: float = 0.0
    # The plugin's HTTP requests (common.tools.ToolResult.http), recorded on the run's tool call.
    http: list = field(default_factory=list)


# How long an aborted run waits for the sandbox to confirm that a plugin stopped. The sandbox keeps
# stopping it after that (at the latest the grant's timeout ends it); the run does not wait longer.
STOP_GRACE_SECONDS = 1.0


def tool_allowed(patterns: list[str], plugin: str, tool: str) -> bool:
    """Whether an allowlist ("*", "plugin", "plugin.tool", "plugin.*") lets an agent use plugin.tool
    (a plugin's or an MCP server's)."""
    return any(p in ("*", plugin, f"{plugin}.*", f"{plugin}.{tool}") for p in patterns)


def source_of(tool: Tool) -> str:
    return tool.server if isinstance(tool, RemoteTool) else tool.plugin


@dataclass(frozen=True)
class Toolbox:
    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def build(cls, patterns: list[str], tools: list[Tool]) -> "Toolbox":
        box: dict[str, Tool] = {}
        for t in tools:
            if tool_allowed(patterns, source_of(t), t.name):
                box.setdefault(t.qualified_name, t)
        return cls(box)

    def specs(self) -> tuple[ToolSpec, ...]:
        """Tool definitions for the LLM request, in a stable order."""
        return tuple(
            ToolSpec(n, t.description or n, t.input_schema or {"type": "object"}) for n, t in sorted(self.tools.items())
        )

    def lookup(self, name: str) -> Tool | None:
        """The tool behind an LLM-chosen name, or None for a name outside this run's toolbox."""
        return self.tools.get(name)


async def load_toolbox(patterns: list[str]) -> Toolbox:
    if not patterns:
        return Toolbox()
    plugins, servers = await asyncio.gather(list_tools(), remote.list_tools())
    return Toolbox.build(patterns, [*plugins, *servers])


def make_executor(agent_name: str):
    """Run a toolbox's tool: in the sandbox under the plugin's grant for this agent, or on its MCP
    server within the server's timeout and output limit."""

    async def execute(tool: Tool, arguments: dict) -> ToolOutcome:
        if isinstance(tool, RemoteTool):
            work = remote.call_tool(tool.server, tool.name, arguments)
        else:
            work = call_tool(tool.plugin, tool.name, arguments, grant_scope=agent_name)
        call = asyncio.ensure_future(work)
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            # Cancelling the call is what stops the plugin inside the sandbox (Extism's cancel handle),
            # or closes the connection to the MCP server.
            call.cancel()
            await asyncio.wait({call}, timeout=STOP_GRACE_SECONDS)
            raise
        return ToolOutcome(result.content, result.is_error, result.error_kind, result.duration_ms, list(result.http))

    return execute
