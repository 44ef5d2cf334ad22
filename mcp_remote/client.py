"""Talking to one remote MCP server over Streamable HTTP with the official `mcp` SDK's client.

Each call opens a fresh client (the SDK negotiates the protocol era: `server/discover`, else the
`initialize` handshake), does one thing and closes it, all within the server's `timeout_ms`:

    endpoint = Endpoint("github", "https://mcp.example.com/mcp", headers_env={"Authorization": "GITHUB_MCP_AUTH"})
    tools = await list_remote_tools(endpoint, os.environ)
    text, is_error = await call_remote_tool(endpoint, "search", {"q": "exoclaw"}, os.environ)

Header values are read from the environment at call time and go nowhere but the request: they are
not stored, logged, or put in an error message (only the variable's name is). Failures raise
RemoteError with a `kind` (timeout, host_denied, not_found, invalid_output, remote_error) and a
message for the operator; cancelling the awaiting task closes the connection (on a handshake-era
connection the SDK also sends `notifications/cancelled`).
"""

import json
import logging
from collections.abc import Mapping
from contextlib import asynccontextmanager

import anyio
import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from common.netcheck import HostRefused, check_url

from .endpoint import Endpoint, RemoteError, headers_from_env

log = logging.getLogger(__name__)

CLIENT_INFO = types.Implementation(name="exoclaw", version="1")
MAX_PAGES = 20
# A response holds the JSON-escaped output plus the envelope: JSON escaping can make text up to six
# times longer (\u00XX), so the transport's cap is generous and the output's own size decides.
SSE_FACTOR = 6
SSE_SLACK = 64 * 1024
MAX_ERROR_TEXT = 500


class ResponseTooLarge(Exception):
    pass


class _CappedBody(httpx2.AsyncByteStream):
    def __init__(self, body: httpx2.AsyncByteStream, cap: int):
        self.body, self.cap, self.seen = body, cap, 0

    async def __aiter__(self):
        async for chunk in self.body:
            self.seen += len(chunk)
            if self.seen > self.cap:
                raise ResponseTooLarge(f"the server sent more than {self.cap} bytes in one response")
            yield chunk

    async def aclose(self) -> None:
        await self.body.aclose()


class CappedTransport(httpx2.AsyncBaseTransport):
    """Stops reading a response body past `cap` bytes, so a server cannot make exoclaw hold an
    answer of any size in memory (a response holds one JSON-RPC answer, or one SSE stream)."""

    def __init__(self, cap: int):
        self.cap = cap
        self.inner = httpx2.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        response = await self.inner.handle_async_request(request)
        return httpx2.Response(response.status_code, headers=response.headers,
                               stream=_CappedBody(response.stream, self.cap), extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


def response_cap(endpoint: Endpoint) -> int:
    return endpoint.max_output_bytes * SSE_FACTOR + SSE_SLACK


@asynccontextmanager
async def _client(endpoint: Endpoint, headers: dict[str, str]):
    seconds = endpoint.timeout_ms / 1000
    cap = response_cap(endpoint)
    # The SDK leaves an HTTP client it was given open: it is closed here, with its connections.
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(seconds), transport=CappedTransport(cap)) as http:
        transport = streamable_http_client(endpoint.url, http_client=http, max_sse_event_size=cap)
        async with Client(transport, client_info=CLIENT_INFO, cache=None) as client:
            yield client


def _first_failure(exc: BaseException) -> BaseException:
    """The exception that matters inside the task groups the SDK runs (ExceptionGroups nest)."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = next((e for e in exc.exceptions if not isinstance(e, anyio.get_cancelled_exc_class())), exc.exceptions[0])
    return exc


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_TEXT else text[: MAX_ERROR_TEXT - 1] + "…"


async def _with_client(endpoint: Endpoint, environ: Mapping[str, str], work):
    """Run `work(client)` against the server within its timeout; RemoteError for every failure."""
    try:
        await check_url(endpoint.url, endpoint.allow_private_hosts)
    except HostRefused as e:
        raise RemoteError("host_denied", f"MCP server {endpoint.name}: {e}") from None
    headers = headers_from_env(endpoint.headers_env, environ)
    done = False
    result = None
    try:
        with anyio.fail_after(endpoint.timeout_ms / 1000):
            async with _client(endpoint, headers) as client:
                result = await work(client)
                done = True
    except RemoteError:
        raise
    except Exception as exc:
        failure = _first_failure(exc)
        if done:
            # The answer arrived; only closing the connection failed or took too long.
            log.warning("MCP server %s: closing the connection failed: %s", endpoint.name, failure)
            return result
        if isinstance(failure, TimeoutError):
            raise RemoteError(
                "timeout", f"MCP server {endpoint.name} did not answer within its {endpoint.timeout_ms} ms limit"
            ) from None
        if isinstance(failure, RemoteError):
            raise failure from None
        if isinstance(failure, ResponseTooLarge):
            raise RemoteError("invalid_output", f"MCP server {endpoint.name}: {failure}") from None
        if isinstance(failure, MCPError):
            kind = "not_found" if failure.code == types.INVALID_PARAMS and "unknown tool" in failure.message.lower() else "remote_error"
            raise RemoteError(kind, f"MCP server {endpoint.name} answered with an error: {_short(failure.message)}") from None
        log.warning("MCP server %s failed: %r", endpoint.name, failure)
        raise RemoteError(
            "remote_error", f"MCP server {endpoint.name} failed: {type(failure).__name__}: {_short(str(failure))}"
        ) from None
    return result


def _tool_json(tool: types.Tool) -> dict:
    return {"name": tool.name, "description": tool.description or "", "input_schema": dict(tool.input_schema or {})}


async def list_remote_tools(endpoint: Endpoint, environ: Mapping[str, str]) -> list[dict]:
    """Every tool the server offers: [{"name", "description", "input_schema"}], in its order."""

    async def work(client: Client) -> list[dict]:
        tools, cursor = [], None
        for _ in range(MAX_PAGES):
            page = await client.list_tools(cursor=cursor)
            tools += [_tool_json(t) for t in page.tools]
            cursor = page.next_cursor
            if not cursor:
                return tools
        raise RemoteError("invalid_output", f"MCP server {endpoint.name} listed tools over more than {MAX_PAGES} pages")

    return await _with_client(endpoint, environ, work)


def result_text(result: types.CallToolResult) -> str:
    """A tool result as the text an LLM gets: text blocks as they are, other blocks named."""
    parts = []
    for block in result.content:
        kind = getattr(block, "type", "")
        if kind == "text":
            parts.append(block.text)
        elif kind == "resource":
            resource = block.resource
            text = getattr(resource, "text", None)
            parts.append(text if text is not None else f"[resource {resource.uri}, {resource.mime_type or 'binary'}]")
        elif kind == "resource_link":
            parts.append(f"[resource link {block.uri}]")
        else:
            parts.append(f"[{kind} content, {getattr(block, 'mime_type', None) or 'unknown type'}, not shown]")
    if not parts and result.structured_content is not None:
        parts.append(json.dumps(result.structured_content, ensure_ascii=False))
    return "\n".join(parts)


async def call_remote_tool(
    endpoint: Endpoint, tool: str, arguments: dict, environ: Mapping[str, str]
) -> tuple[str, bool]:
    """Call `tool` with `arguments`: (text, is_error). is_error is the tool's own verdict (it ran)."""

    async def work(client: Client) -> tuple[str, bool]:
        result = await client.call_tool(tool, arguments)
        return result_text(result), bool(result.is_error)

    text, is_error = await _with_client(endpoint, environ, work)
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > endpoint.max_output_bytes:
        raise RemoteError(
            "invalid_output", f"the output of {endpoint.name}.{tool} is {size} bytes, more than its limit of "
            f"{endpoint.max_output_bytes}"
        )
    return text, is_error
