"""Runs over the real Redis between processes: daphne, two `runworker agent-runs` and 20 clients, on one
PostgreSQL database."""

import asyncio
import json

import pytest
import redis as redis_lib
from websockets.asyncio.client import connect

from tests.runtime_cluster import Cluster, rpc

pytestmark = pytest.mark.asyncio
CLIENTS = 20


@pytest.fixture
def cluster(tmp_path, redis_url, surreal_ws_url, postgres_url):
    c = Cluster(tmp_path, redis_url, surreal_ws_url, postgres_url)
    c.redis = redis_lib.Redis.from_url(redis_url)
    yield c
    c.stop(c.redis)


class Chat:
    """One WebSocket client that starts one run and collects its events."""

    def __init__(self, ws):
        self.ws = ws
        self.run_id = None
        self.events: list[dict] = []

    async def send(self, text: str, peer: str) -> dict:
        await rpc(self.ws, "chat.send", {"text": text, "agent": "helper", "peer": peer}, 1)
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), 30))
            if msg.get("id") == 1:
                assert "result" in msg, msg
                self.run_id = msg["result"]["run_id"]
                return msg["result"]
            self.events.append(msg["params"])

    async def until(self, predicate, timeout: float = 30) -> list[dict]:
        async def pump():
            while not predicate([e for e in self.events if e["run_id"] == self.run_id]):
                msg = json.loads(await self.ws.recv())
                assert msg.get("method") == "chat.event", msg
                self.events.append(msg["params"])

        await asyncio.wait_for(pump(), timeout)
        return [e for e in self.events if e["run_id"] == self.run_id]

    async def finished(self, timeout: float = 30) -> list[dict]:
        return await self.until(lambda evs: bool(evs) and evs[-1]["type"] in ("done", "error"), timeout)


async def test_twenty_clients_get_every_event_once_in_order_from_runs_spread_over_two_workers(cluster):
    async def one(n: int) -> tuple[str, list[dict]]:
        async with connect(cluster.url) as ws:
            chat = Chat(ws)
            await chat.send(f'/tool echo.echo {{"text": "client {n}"}}', peer=f"p{n}")
            return chat.run_id, await chat.finished()

    results = await asyncio.gather(*(one(n) for n in range(CLIENTS)))
    for n, (run_id, events) in enumerate(results):
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), (n, events)
        assert [e["type"] for e in events if e["type"] != "delta"] == ["tool_call", "tool_result", "done"], events
        assert events[1]["content"] == f"client {n}"
        assert "".join(e["text"] for e in events if e["type"] == "delta") == f"Tool echo.echo returned: client {n}"
    owners = {cluster.owner_pid(cluster.redis, run_id) for run_id, _ in results}
    assert owners == {w.pid for w in cluster.workers}, f"runs went to {owners}, workers are {[w.pid for w in cluster.workers]}"


async def test_killing_a_worker_mid_run_ends_its_run_with_an_error_while_the_other_finishes(cluster):
    chats, sockets = [], []
    owners: dict[int, Chat] = {}
    # Start spinning runs until each worker holds one (the channel layer decides who takes which).
    for n in range(12):
        ws = await connect(cluster.url)
        sockets.append(ws)
        chat = Chat(ws)
        await chat.send("/tool spin.spin {}", peer=f"spin{n}")
        await chat.until(lambda evs: any(e["type"] == "tool_call" for e in evs))
        owners.setdefault(cluster.owner_pid(cluster.redis, chat.run_id), chat)
        chats.append(chat)
        if len(owners) == 2:
            break
    assert len(owners) == 2, "every spinning run went to the same worker"
    victim, survivor = cluster.workers
    victim.kill()
    lost = await owners[victim.pid].finished(timeout=20)
    assert (lost[-1]["type"], lost[-1]["reason"]) == ("error", "worker_lost"), lost
    assert [e["seq"] for e in lost] == list(range(1, len(lost) + 1))
    kept = await owners[survivor.pid].finished(timeout=20)
    assert kept[-1]["type"] == "done", kept
    assert next(e for e in kept if e["type"] == "tool_result")["error_kind"] == "timeout"

    async with connect(cluster.url) as ws:
        after = Chat(ws)
        await after.send("still here?", peer="after")
        assert "".join(e["text"] for e in await after.finished() if e["type"] == "delta") == "still here?"
        await rpc(ws, "sessions.history", {"session_key": lost[-1]["session_key"]}, 2)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert reply["result"]["messages"][-1]["interrupted"].startswith("error: worker_lost"), reply
    for ws in sockets:
        await ws.close()
