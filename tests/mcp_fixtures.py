"""Fixtures for the MCP tests: exoclaw's /mcp on the live daphne with tokens and a looping plugin,
the official SDK's client for it, and a remote MCP server made with the SDK on loopback."""

import secrets
import sys
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from exoclaw.client import Gateway
from tests.clients_fixtures import free_port, serving

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
SPIN = {"name": "spin", "description": "Never returns.", "input_schema": {"type": "object"}}


@dataclass
class McpLive:
    server: object  # the LiveServer
    tokens: dict[str, str]  # what the token may do -> the raw token
    names: dict[str, str]  # what the token may do -> its name (its principal is token:<name>)
    suffix: str

    @property
    def url(self) -> str:
        return self.server.http_url + "/mcp"


def _manage(server, *args) -> str:
    done = server.manage(*args)
    assert done.returncode == 0, f"manage.py {args[0]} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout.strip()


@pytest.fixture(scope="module")
def mcp_live(exoclaw_server, tmp_path_factory):
    """The live exoclaw with a looping plugin cut off at 300 ms (`spin_<suffix>`), one that runs for a
    minute unless cancelled (`longspin_<suffix>`), and tokens: `tools` (calc, echo and both spins),
    `chat_only` (every plugin but no tools scope) and `no_plugins` (tools scope, no plugin)."""
    suffix = secrets.token_hex(3)
    config = tmp_path_factory.mktemp("mcp-live") / "spin.toml"
    config.write_text(f"""
[[plugins]]
name = "spin_{suffix}"
wasm = "{TEST_PLUGINS / 'loop.wasm'}"
declared_tools = [{{name = "spin", description = "Never returns.", input_schema = {{type = "object"}}}}]
grant = {{timeout_ms = 300}}

[[plugins]]
name = "longspin_{suffix}"
wasm = "{TEST_PLUGINS / 'loop.wasm'}"
declared_tools = [{{name = "spin", description = "Never returns.", input_schema = {{type = "object"}}}}]
grant = {{timeout_ms = 60000}}
""")
    _manage(exoclaw_server, "loadconfig", str(config))
    plugins = ["calc", "echo", f"spin_{suffix}", f"longspin_{suffix}"]
    specs = {
        "tools": ["--scope", "tools", *[a for p in plugins for a in ("--plugin", p)]],
        "chat_only": ["--scope", "chat", "--plugin", "*"],
        "no_plugins": ["--scope", "tools"],
    }
    tokens, names = {}, {}
    for what, args in specs.items():
        names[what] = f"mcp-{what}-{suffix}"
        tokens[what] = _manage(exoclaw_server, "createtoken", names[what], *args)
    return McpLive(exoclaw_server, tokens, names, suffix)


@asynccontextmanager
async def mcp_client(url: str, token: str | None, mode: str = "legacy", client_name: str = "pytest-mcp"):
    """The official SDK's client over Streamable HTTP with `Authorization: Bearer <token>` (None: none)."""
    http = create_mcp_http_client(headers={"Authorization": f"Bearer {token}"} if token is not None else {})
    transport = streamable_http_client(url, http_client=http)
    async with Client(transport, mode=mode, client_info=types.Implementation(name=client_name, version="1")) as client:
        yield client


async def gateway_call(server, method: str, params: dict):
    """One JSON-RPC call on the live gateway with its admin token."""
    gw = await Gateway.connect(server.ws_url, server.token)
    try:
        return await gw.call(method, params)
    finally:
        await gw.close()


async def admin_get(server, path: str) -> httpx.Response:
    """GET an admin page as the bootstrap superuser (signed in through the login form)."""
    async with httpx.AsyncClient(base_url=server.http_url, timeout=30) as http:
        login = await http.get("/admin/login/")
        await http.post("/admin/login/", data={
            "username": "admin", "password": server.admin_password, "next": "/admin/",
            "csrfmiddlewaretoken": http.cookies["csrftoken"],
        }, headers={"Referer": server.http_url + "/admin/login/"})
        assert login.status_code == 200 and "sessionid" in http.cookies, "the admin login failed"
        return await http.get(path)


@dataclass
class RemoteMcp:
    port: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/mcp"


@pytest.fixture(scope="module")
def remote_mcp(tmp_path_factory):
    """tests/mcp_remote_server.py (the SDK's MCPServer) on a free loopback port."""
    port = free_port()
    log = tmp_path_factory.mktemp("mcp-remote") / "server.log"
    with serving([sys.executable, "-m", "tests.mcp_remote_server", str(port)], port, log):
        yield RemoteMcp(port)
