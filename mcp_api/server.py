"""The MCP side of /mcp, on the official SDK's low-level `Server`: `initialize`, `ping`, `tools/list`,
`tools/call` and `notifications/cancelled` (and the 2026-07-28 era's `server/discover`), handled by
the SDK; the two tool methods translate to `calls`.

The SDK's Streamable HTTP session manager needs a task group that outlives requests, which an ASGI
server's lifespan would start; daphne has no lifespan, so `session_manager()` starts one on the
running event loop at the first request (one per loop). Handshake-era sessions live in this process:
behind a load balancer, send one client's requests to the same process (sticky sessions).
"""

import asyncio
import logging

import mcp_types as types
from mcp.server.lowlevel.server import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.exceptions import MCPError

from . import calls

log = logging.getLogger(__name__)

PRINCIPAL = "exoclaw.principal"  # where the ASGI app leaves the authenticated principal in the scope
INSTRUCTIONS = (
    "exoclaw's sandboxed WebAssembly tools, named plugin.tool. Each call runs under the plugin's grant "
    "and is recorded in exoclaw's session store."
)


def _principal(ctx):
    request = ctx.request
    principal = request.scope.get(PRINCIPAL) if request is not None else None
    if principal is None:  # every request passes the ASGI app's check first; this is a guard, not a path
        raise MCPError(types.INTERNAL_ERROR, "the request carries no authenticated principal")
    return principal


def _client_name(ctx) -> str:
    params = ctx.session.client_params
    info = params.client_info if params is not None else None
    return (info.name if info is not None else "") or "-"


async def list_tools(ctx, params) -> types.ListToolsResult:
    tools = await calls.visible_tools(_principal(ctx))
    return types.ListToolsResult(
        tools=[types.Tool(name=t.name, description=t.description, input_schema=t.input_schema) for t in tools]
    )


async def call_tool(ctx, params: types.CallToolRequestParams) -> types.CallToolResult:
    principal = _principal(ctx)
    tool = await calls.find_tool(principal, params.name)
    if tool is None:
        raise MCPError(types.INVALID_PARAMS, f"Unknown tool: {params.name}")
    # The SDK's JSON parser already refused a lone surrogate ("\ud800"), which no text holds.
    result = await calls.call(principal, _client_name(ctx), tool, dict(params.arguments or {}))
    return types.CallToolResult(content=[types.TextContent(type="text", text=result.content)], is_error=result.is_error)


def build_server() -> Server:
    return Server("exoclaw", version="1", instructions=INSTRUCTIONS, on_list_tools=list_tools, on_call_tool=call_tool)


class _Running:
    def __init__(self):
        self.loop: asyncio.AbstractEventLoop | None = None
        self.manager: StreamableHTTPSessionManager | None = None
        self.ready: asyncio.Future | None = None
        self.task: asyncio.Task | None = None

    async def get(self) -> StreamableHTTPSessionManager:
        loop = asyncio.get_running_loop()
        if self.loop is not loop:
            self.loop, self.ready = loop, loop.create_future()
            self.manager = StreamableHTTPSessionManager(build_server())
            self.task = loop.create_task(self._run(self.manager, self.ready), name="exoclaw-mcp-sessions")
        await asyncio.shield(self.ready)
        return self.manager

    @staticmethod
    async def _run(manager: StreamableHTTPSessionManager, ready: asyncio.Future) -> None:
        try:
            async with manager.run():
                ready.set_result(None)
                await asyncio.Event().wait()
        except BaseException as e:
            if not ready.done():
                ready.set_exception(e if isinstance(e, Exception) else RuntimeError("the MCP session manager stopped"))
            if not isinstance(e, asyncio.CancelledError):
                log.exception("the MCP session manager failed")
            raise


_running = _Running()


async def session_manager() -> StreamableHTTPSessionManager:
    """This event loop's session manager, started on first use."""
    return await _running.get()
