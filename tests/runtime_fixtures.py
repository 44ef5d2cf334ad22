"""Fixtures for the agent runtime: agents, plugins, a chat client over the real ASGI stack."""

import asyncio
import uuid
from pathlib import Path

import pytest
import pytest_asyncio
from channels.db import database_sync_to_async
from channels.layers import channel_layers
from channels.testing import WebsocketCommunicator

from agents.models import Agent
from exoclaw.models import ApiToken
from routing.resolver import clear_cache
from sandbox.models import CapabilityGrant, Plugin

TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
SAMPLE_PLUGINS = Path(__file__).resolve().parent.parent / "sandbox" / "plugins"
TERMINAL = ("done", "error")


@pytest.fixture
def fresh_layer():
    """A fresh in-memory channel layer (and so a fresh in-process run board) for this test."""
    channel_layers.backends.clear()
    clear_cache()
    yield
    channel_layers.backends.clear()


@database_sync_to_async
def make_agent(name="helper", **fields) -> Agent:
    fields.setdefault("provider", "echo")
    agent = Agent(name=name, **fields)
    agent.full_clean()
    agent.save()
    return agent


@database_sync_to_async
def make_plugin(name: str, wasm: Path, declared_tools=(), timeout_ms=5000) -> Plugin:
    plugin = Plugin(name=name, wasm_path=str(wasm), declared_tools=list(declared_tools))
    plugin.full_clean()
    plugin.save()
    CapabilityGrant.objects.create(plugin=plugin, timeout_ms=timeout_ms)
    return plugin


async def echo_plugin() -> Plugin:
    return await make_plugin("echo", SAMPLE_PLUGINS / "echo.wasm")


async def spin_plugin(timeout_ms=20_000) -> Plugin:
    """A tool that never returns (until its timeout), to hold a run in a sandbox call."""
    tool = {"name": "spin", "description": "Never returns.", "input_schema": {"type": "object"}}
    return await make_plugin("spin", TEST_PLUGINS / "loop.wasm", [tool], timeout_ms=timeout_ms)


@database_sync_to_async
def make_token(scopes=("chat", "sessions:read", "sessions:write"), channels=(), agents=("*",), name=None) -> str:
    row = ApiToken(name=name or f"t-{uuid.uuid4().hex[:6]}", scopes=list(scopes), channels=list(channels),
                   agents=list(agents))
    raw = row.set_new_token()
    row.save()
    return raw


class Client:
    """A JSON-RPC client over a WebsocketCommunicator that sorts answers from chat.event notifications."""

    def __init__(self, communicator):
        self.c = communicator
        self.ids = 0
        self.events: dict[str, list[dict]] = {}
        self.answers: dict[int, dict] = {}

    async def _pump(self, timeout):
        msg = await self.c.receive_json_from(timeout=timeout)
        if msg.get("method") == "chat.event":
            self.events.setdefault(msg["params"]["run_id"], []).append(msg["params"])
        else:
            self.answers[msg["id"]] = msg

    async def call(self, method, params=None, timeout=10) -> dict:
        """The whole answer (result or error) to one request."""
        self.ids += 1
        rid = self.ids
        await self.c.send_json_to({"jsonrpc": "2.0", "id": rid, "method": method, "params": params or {}})
        while rid not in self.answers:
            await self._pump(timeout)
        return self.answers.pop(rid)

    async def result(self, method, params=None) -> dict:
        answer = await self.call(method, params)
        assert "result" in answer, f"{method} failed: {answer}"
        return answer["result"]

    async def until(self, run_id, predicate, timeout=20) -> list[dict]:
        """This run's events once `predicate(events)` holds."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self.events.get(run_id, [])):
            left = deadline - loop.time()
            assert left > 0, f"run {run_id}: gave up waiting; events so far: {self.events.get(run_id)}"
            await self._pump(left)
        return self.events[run_id]

    async def finished(self, run_id, timeout=20) -> list[dict]:
        return await self.until(run_id, lambda evs: bool(evs) and evs[-1]["type"] in TERMINAL, timeout)

    async def close(self):
        await self.c.disconnect()


@pytest_asyncio.fixture
async def connect(transactional_db):
    from exoclaw.asgi import application

    opened = []

    async def open_client(scopes=("chat", "sessions:read", "sessions:write"), channels=(), agents=("*",),
                          name=None, token=None) -> Client:
        """A client over a new token with these scopes and permissions (by default it may name any
        agent, as most tests do; its conversations are under token:<name>), or over `token`."""
        token = token or await make_token(scopes, channels, agents, name)
        c = WebsocketCommunicator(application, f"/ws?token={token}")
        c.scope["client"] = ("203.0.113.5", 50000)
        ok, _ = await c.connect(timeout=5)
        assert ok, "the gateway refused the handshake"
        opened.append(Client(c))
        return opened[-1]

    yield open_client
    for client in opened:
        await client.close()


def text_of(events) -> str:
    return "".join(e["text"] for e in events if e["type"] == "delta")


def assert_gap_free(events):
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), [e["seq"] for e in events]
