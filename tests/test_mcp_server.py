"""exoclaw as an MCP server: the official `mcp` SDK's client against /mcp on a live daphne, with the
sample plugins from `bootstrap` and the looping test plugin."""

import asyncio
import json

import httpx
import pytest
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

from tests.clients_fixtures import exoclaw_server  # noqa: F401
from tests.mcp_fixtures import admin_get, gateway_call, mcp_client, mcp_live  # noqa: F401

pytestmark = pytest.mark.asyncio


def mcp_error(exc: BaseException) -> MCPError | None:
    """The MCPError inside what the SDK raised (it comes wrapped in its task groups' ExceptionGroups)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    return exc if isinstance(exc, MCPError) else None


async def session_of(live, what: str, client_name: str) -> dict:
    """The session that records `what` token's calls from `client_name`, found on the gateway."""
    found = await gateway_call(live.server, "sessions.list", {"channel": "mcp", "peer": client_name, "limit": 100})
    mine = [s for s in found["sessions"] if s["owner"] == f"token:{live.names[what]}"]
    assert len(mine) == 1, f"expected one MCP session of {live.names[what]} from {client_name}: {found['sessions']}"
    return mine[0]


@pytest.mark.filterwarnings("ignore:ping is removed")
async def test_initialize_then_the_granted_tools_are_listed_with_their_schemas(mcp_live):
    async with mcp_client(mcp_live.url, mcp_live.tokens["tools"]) as client:
        assert client.protocol_version in HANDSHAKE_PROTOCOL_VERSIONS, "mode=legacy goes through initialize"
        assert client.server_info.name == "exoclaw"
        assert client.server_capabilities.tools is not None
        await client.send_ping()  # handshake-era only (the 2026-07-28 era dropped ping)
        tools = {t.name: t for t in (await client.list_tools()).tools}
    suffix = mcp_live.suffix
    assert sorted(tools) == sorted(["calc.calc", "echo.echo", f"spin_{suffix}.spin", f"longspin_{suffix}.spin"]), (
        "only the plugins the token names are offered (count_vowels and http_get are not)")
    assert tools["calc.calc"].input_schema["properties"]["expr"]["type"] == "string"
    assert tools["calc.calc"].input_schema["required"] == ["expr"]
    assert tools["calc.calc"].description


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_call_runs_in_the_sandbox_and_is_recorded_as_the_tokens_session(mcp_live, mode):
    client_name = f"pytest-{mode}-{mcp_live.suffix}"
    async with mcp_client(mcp_live.url, mcp_live.tokens["tools"], mode=mode, client_name=client_name) as client:
        result = await client.call_tool("calc.calc", {"expr": "6*7"})
        assert (result.is_error, [c.text for c in result.content]) == (False, ["42"])
        wrong = await client.call_tool("calc.calc", {"expression": "1"})
        assert wrong.is_error and "expr" in wrong.content[0].text, "a plugin's refusal is an isError result"
        with pytest.raises(Exception) as raised:
            await client.call_tool("http_get.fetch", {"url": "https://example.com"})
        error = mcp_error(raised.value)
        assert error is not None and error.code == -32602 and "Unknown tool" in error.message, (
            "a plugin the token does not name answers as an unknown tool")

    session = await session_of(mcp_live, "tools", client_name)
    principal = f"token:{mcp_live.names['tools']}"
    assert session["key"] == f"agent:-:mcp:{principal.replace(':', '%3A')}:{client_name}"
    assert (session["agent"], session["channel"], session["account"]) == ("-", "mcp", principal)
    history = await gateway_call(mcp_live.server, "sessions.history", {"session_key": session["key"]})
    blocks = [(m["role"], m["content"][0]["type"]) for m in history["messages"]]
    assert blocks == [("assistant", "tool_use"), ("user", "tool_result")] * 2
    assert history["messages"][0]["content"][0]["input"] == {"expr": "6*7"}
    assert history["messages"][1]["content"][0]["content"] == "42"

    export = (await admin_get(mcp_live.server, f"/admin/sessions/{session['id']}/export.json")).json()
    runs = export["runs"]
    assert [r["owner"] for r in runs] == [principal, principal] and [r["status"] for r in runs] == ["done", "done"]
    calls = [c for r in runs for c in r["tool_calls"]]
    assert [(c["name"], c["outcome"], c.get("output")) for c in calls] == [
        ("calc.calc", "ok", "42"), ("calc.calc", "error", None)]
    assert "expr" in calls[1]["error"]
    assert all(c["duration_ms"] > 0 for c in calls)
    page = await admin_get(mcp_live.server, "/admin/sessions/?channel=mcp")
    assert session["id"] in page.text, "the session browser lists the MCP session"


async def test_a_looping_plugin_times_out_as_an_error_result_and_the_server_keeps_serving(mcp_live):
    async with mcp_client(mcp_live.url, mcp_live.tokens["tools"], mode="auto") as client:
        result = await client.call_tool(f"spin_{mcp_live.suffix}.spin", {})
        assert result.is_error
        assert result.content[0].text.startswith("timeout:") and "300 ms" in result.content[0].text
        again = await client.call_tool("echo.echo", {"text": "still here"})
        assert (again.is_error, again.content[0].text) == (False, "still here")


async def test_a_cancelled_call_stops_the_plugin_and_is_recorded_as_cancelled(mcp_live):
    client_name = f"pytest-cancel-{mcp_live.suffix}"
    async with mcp_client(mcp_live.url, mcp_live.tokens["tools"], client_name=client_name) as client:
        # The plugin's grant lets it run for a minute: only the cancellation can end it sooner.
        call = asyncio.create_task(client.call_tool(f"longspin_{mcp_live.suffix}.spin", {}))
        session = await until_recorded(mcp_live, client_name)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert (await client.call_tool("calc.calc", {"expr": "1+1"})).content[0].text == "2"
    export = (await admin_get(mcp_live.server, f"/admin/sessions/{session['id']}/export.json")).json()
    first = export["runs"][0]
    assert first["status"] == "aborted"
    assert [(c["outcome"], c["error"].split(":")[0]) for c in first["tool_calls"]] == [("cancelled", "cancelled")]


async def until_recorded(live, client_name: str, timeout: float = 20.0) -> dict:
    """The MCP session of `client_name` once its first call is recorded as started (polled)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        found = await gateway_call(live.server, "sessions.list", {"channel": "mcp", "peer": client_name})
        if found["sessions"] and found["sessions"][0]["message_count"] >= 1:
            return found["sessions"][0]
        await asyncio.sleep(0.05)  # a poll interval: what ends the wait is the recorded call
    pytest.fail(f"no call of {client_name} was recorded within {timeout} s")


@pytest.mark.parametrize("what,code", [("chat_only", -32002), ("bad", -32001), ("none", -32001)])
async def test_a_token_without_the_tools_scope_or_a_wrong_token_is_refused(mcp_live, what, code):
    token = {"chat_only": mcp_live.tokens["chat_only"], "bad": "exo_not-a-token"}.get(what)
    with pytest.raises(BaseException) as raised:
        async with mcp_client(mcp_live.url, token) as client:
            await client.list_tools()
    error = mcp_error(raised.value)
    assert error is not None and error.code == code, repr(raised.value)


async def test_a_token_with_no_permitted_plugins_sees_and_calls_nothing(mcp_live):
    async with mcp_client(mcp_live.url, mcp_live.tokens["no_plugins"]) as client:
        assert (await client.list_tools()).tools == []
        with pytest.raises(Exception) as raised:
            await client.call_tool("calc.calc", {"expr": "1"})
        assert mcp_error(raised.value).code == -32602


def rpc_error(response) -> dict:
    """The JSON-RPC error of a plain JSON or a one-event SSE answer."""
    text = response.text
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        text = next(line[len("data: "):] for line in text.splitlines() if line.startswith("data: "))
    return json.loads(text)["error"]


async def test_malformed_mcp_gets_json_rpc_errors_and_a_session_answers_only_its_own_token(mcp_live):
    headers = {"Authorization": f"Bearer {mcp_live.tokens['tools']}", "Accept": "application/json, text/event-stream"}
    async with httpx.AsyncClient(base_url=mcp_live.server.http_url, headers=headers, timeout=30) as http:
        opened = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "1"}}})
        assert opened.status_code == 200
        session = {"mcp-session-id": opened.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await http.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        bad = {
            "{not json": -32700,
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "tools/nope"}): -32601,
            json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
                        "params": {"name": "calc.calc", "arguments": [1]}}): -32602,
            json.dumps({"jsonrpc": "2.0", "id": 4, "method": "tools/call", "params": {}}): -32602,
            json.dumps({"jsonrpc": "2.0", "id": 5, "method": "tools/call",
                        "params": {"name": "calc.calc", "arguments": {"expr": "\ud800"}}}): -32700,  # no text
        }
        for body, code in bad.items():
            answer = await http.post("/mcp", content=body, headers={**session, "content-type": "application/json"})
            assert rpc_error(answer)["code"] == code, (body, answer.text)
            assert "Traceback" not in answer.text
        other = {**session, "Authorization": f"Bearer {mcp_live.tokens['no_plugins']}"}
        stolen = await http.post("/mcp", json={"jsonrpc": "2.0", "id": 6, "method": "tools/list"}, headers=other)
        assert stolen.status_code == 404, "another token cannot use this session"
