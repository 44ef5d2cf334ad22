"""The real server: `manage.py serve` (daphne) on a free loopback port, spoken to with `websockets`."""

import asyncio
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest
from channels_redis.core import RedisChannelLayer
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from exoclaw.gateway.notify import connection_group, notify_message
from tests.runtime_cluster import SEED_TOKEN

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "exo_e2e_" + uuid.uuid4().hex


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A `manage.py serve` subprocess whose whole output (stdout and stderr) is kept."""

    def __init__(self, env: dict, port: int):
        self.port = port
        self.env = env
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if f"Listening on TCP address 127.0.0.1:{self.port}" in line:
                self.listening.set()
        self.listening.set()

    def wait_listening(self):
        assert self.listening.wait(30) and self.proc.poll() is None, "daphne did not start:\n" + self.output()

    def stop(self) -> str:
        self.proc.terminate()
        self.proc.wait(15)
        self.reader.join(15)
        return self.output()

    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture
def server(tmp_path, redis_url):
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "exoclaw.settings",
        "EXOCLAW_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SURREALDB_URL": "mem://",
        "EXOCLAW_TOKEN": TOKEN,
        "REDIS_URL": redis_url,
        "REDIS_PREFIX": prefix,
        "LOG_LEVEL": "DEBUG",
        "GATEWAY_PING_INTERVAL": "1",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("EXOCLAW_BIND", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, capture_output=True)
    subprocess.run([sys.executable, "-c", SEED_TOKEN], cwd=ROOT, env=env, check=True, capture_output=True)
    s = Server(env, free_port())
    s.wait_listening()
    s.layer = RedisChannelLayer(hosts=[redis_url], prefix=prefix)
    yield s
    if s.proc.poll() is None:
        s.stop()


async def rpc(ws, method, params=None, rid=1):
    msg = {"jsonrpc": "2.0", "method": method, "id": rid}
    if params is not None:
        msg["params"] = params
    await ws.send(json.dumps(msg))
    return json.loads(await asyncio.wait_for(ws.recv(), 5))


def docs_client_example() -> str:
    """The Python client example from docs/protocol.md, as written there."""
    text = (ROOT / "docs" / "protocol.md").read_text()
    section = text[text.index("## Python client") :]
    start = section.index("```python\n") + len("```python\n")
    return section[start : section.index("\n```", start)]


class PingSeen(logging.Handler):
    """Sets an event when the websockets client logs an incoming PING frame."""

    def __init__(self, loop, event):
        super().__init__(logging.DEBUG)
        self.loop, self.event = loop, event

    def emit(self, record):
        if record.getMessage().startswith("< PING"):
            self.loop.call_soon_threadsafe(self.event.set)


@pytest.mark.redis
@pytest.mark.asyncio
async def test_the_real_server_speaks_json_rpc_and_keeps_tokens_out_of_its_log(server):
    url = f"ws://127.0.0.1:{server.port}/ws"
    ping_seen = asyncio.Event()
    client_log = logging.getLogger("websockets.client")
    watcher = PingSeen(asyncio.get_running_loop(), ping_seen)
    client_log.addHandler(watcher)
    client_log.setLevel(logging.DEBUG)
    try:
        # Behind a proxy header the loopback exemption does not apply: the client must authenticate.
        async with connect(url, additional_headers={"X-Forwarded-For": "203.0.113.9"}, ping_interval=None) as ws:
            assert (await rpc(ws, "status"))["error"]["data"]["reason"] == "auth_required"

            await ws.send('{"jsonrpc": "2.0", "method": "ping", "id": ')
            reply = json.loads(await ws.recv())
            assert reply["id"] is None and reply["error"]["code"] == -32700
            assert (await rpc(ws, "ping", rid="a"))["result"] == "pong"

            bad = await rpc(ws, "auth", {"token": TOKEN + "x"})
            assert bad["error"]["data"]["reason"] == "token_invalid"
            good = await rpc(ws, "auth", {"token": TOKEN}, rid="auth")
            assert good["result"] == {"principal": "token:EXOCLAW_TOKEN", "scopes": ["admin"]}
            status = (await rpc(ws, "status"))["result"]
            assert status["channel_layer"] == "redis" and status["store"]["scheme"] == "mem"

            batch = [
                {"jsonrpc": "2.0", "method": "ping", "id": 1},
                {"jsonrpc": "2.0", "method": "agents.list", "id": 2},
                {"jsonrpc": "2.0", "method": "ping"},
                {"jsonrpc": "2.0", "method": "nope", "id": 3},
            ]
            await ws.send(json.dumps(batch))
            replies = {r["id"]: r for r in json.loads(await ws.recv())}
            assert set(replies) == {1, 2, 3}
            assert replies[1]["result"] == "pong" and replies[2]["result"] == [] and replies[3]["error"]["code"] == -32601

            await ws.send(json.dumps({"jsonrpc": "2.0", "method": "ping"}))
            assert (await rpc(ws, "ping", rid="after-notification"))["id"] == "after-notification"

            # A notification pushed from another process, through Redis, to this one connection.
            await server.layer.group_send(
                connection_group(status["connection"]), notify_message("chat.event", {"run": "r1", "delta": "hi"})
            )
            event = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert event == {"jsonrpc": "2.0", "method": "chat.event", "params": {"run": "r1", "delta": "hi"}}
            assert (await rpc(ws, "ping", rid="still"))["result"] == "pong"

            # Idle connections get pings from the server (GATEWAY_PING_INTERVAL=1 here).
            await asyncio.wait_for(ping_seen.wait(), 10)
            assert (await rpc(ws, "ping", rid="after-idle"))["result"] == "pong"

        async with connect(f"{url}?token={TOKEN}") as ws:
            assert (await rpc(ws, "status"))["result"]["principal"] == "token:EXOCLAW_TOKEN"
        async with connect(f"{url}?token={TOKEN}wrong") as ws:
            closing = json.loads(await ws.recv())
            assert closing["method"] == "gateway.closing" and closing["params"]["reason"] == "token_invalid"
            with pytest.raises(ConnectionClosed) as refused:
                await ws.recv()
        assert refused.value.rcvd.code == 4401
    finally:
        client_log.removeHandler(watcher)
        client_log.setLevel(logging.NOTSET)
        await server.layer.flush()

    client = subprocess.run(
        [sys.executable, "-c", docs_client_example()],
        env={**os.environ, "EXOCLAW_URL": url, "EXOCLAW_TOKEN": TOKEN},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert client.returncode == 0 and client.stdout.startswith("pong\n{'version'"), client.stdout + client.stderr

    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{server.port}/missing/?token={TOKEN}", timeout=5)

    output = server.stop()
    assert "gateway login from 127.0.0.1 refused: token_invalid" in output
    assert "as token:EXOCLAW_TOKEN" in output and "WSCONNECT /ws" in output and '"GET /missing/?token=[redacted]" 404' in output, output
    assert TOKEN not in output and TOKEN[8:24] not in output


@pytest.mark.redis
@pytest.mark.asyncio
async def test_revoketoken_in_another_process_closes_the_servers_open_connection(server):
    made = subprocess.run([sys.executable, "manage.py", "createtoken", "leaving", "--scope", "chat"], cwd=ROOT,
                          env=server.env, check=True, capture_output=True, text=True)
    raw = made.stdout.strip()
    async with connect(f"ws://127.0.0.1:{server.port}/ws?token={raw}") as ws:
        assert (await rpc(ws, "status"))["result"]["principal"] == "token:leaving"
        await asyncio.to_thread(subprocess.run, [sys.executable, "manage.py", "revoketoken", "leaving"], cwd=ROOT,
                                env=server.env, check=True, capture_output=True)
        closing = json.loads(await asyncio.wait_for(ws.recv(), 2))
        assert closing["method"] == "gateway.closing" and closing["params"]["reason"] == "token_disabled"
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 2)
        assert closed.value.rcvd.code == 4401
