"""exoclaw as an MCP server: the sandboxed tools at /mcp over Streamable HTTP (docs/mcp.md)."""
