"""A remote MCP server made with the official SDK (`MCPServer`, formerly FastMCP), for the tests of
MCP servers as agents' tool sources. Run as `python -m tests.mcp_remote_server PORT`; it serves
Streamable HTTP at http://127.0.0.1:PORT/mcp until it is terminated."""

import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("exoclaw-test-remote")
RUNNING = {"hang": 0}


@app.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@app.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@app.tool()
def wipe_disk() -> str:
    """A tool no agent may be offered."""
    return "wiped"


@app.tool()
async def hang() -> str:
    """Never answers (until the call is cancelled)."""
    RUNNING["hang"] += 1
    try:
        await anyio.sleep_forever()
    finally:
        RUNNING["hang"] -= 1
    return "unreachable"


@app.tool()
def hangs_running() -> int:
    """How many calls of hang are running now."""
    return RUNNING["hang"]


@app.tool()
def whoami(ctx: Context) -> str:
    """The Authorization header this server received."""
    return (ctx.headers or {}).get("authorization", "no authorization header")


@app.tool()
def flood(size: int) -> str:
    """`size` bytes of text."""
    return "x" * size


if __name__ == "__main__":
    app.run(transport="streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
