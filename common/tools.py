"""What a tool call comes back as, whoever ran it: a plug-in in the sandbox (`sandbox.tools`) or a
remote MCP server (`mcp_remote.tools`). The agent runtime and the MCP server read only this."""

from dataclasses import dataclass


@dataclass(frozen=True)
class ToolResult:
    content: str
    is_error: bool
    error_kind: str | None
    duration_ms: float
    # The HTTP requests a plug-in's call made: dicts with method, host, path, status, bytes, duration_ms
    # and `refused` (why a request was refused, or None); see sandbox/net.py. A remote tool makes its
    # own, which exoclaw does not see.
    http: tuple = ()
