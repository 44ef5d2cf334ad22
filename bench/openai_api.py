"""Time to the first streamed token: `POST /v1/chat/completions` (stream: true) against the same run
through the gateway's JSON-RPC WebSocket (`chat.send`), in one run of this script.

One daphne (`manage.py serve`, in-process mode: the in-memory channel layer and the embedded store)
serves both. Each client keeps one connection open (an HTTP keep-alive connection, one WebSocket) and
sends runs one after another, alternating which way goes first, so the machine's noise hits both
alike. The clock runs from just before the request is written to the first text delta read (the SSE
chunk with content, the `chat.event` delta); then the rest of the run is read to its end.

- agents: `helper` (the offline echo agent: no LLM time at all, so what is measured is exoclaw's own
  path) and `bench`, the Anthropic provider streaming a 20-word answer from a fake server on loopback
  (tests/fakes), as bench/chat.py does;
- sessions: `fresh` (a new WebSocket peer per run, against self-contained API requests, each a new
  session) and `conversation` (one peer, against one X-Exoclaw-Conversation: the history grows alike).

    .venv/bin/python bench/openai_api.py                  # defaults: 200 runs per way, every agent and session kind
    .venv/bin/python bench/openai_api.py --runs 50 --agents helper --sessions fresh
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from tests.fakes import anthropic_server  # noqa: E402
from tests.fakes.http import Text  # noqa: E402
from tests.runtime_cluster import TOKEN, Cluster  # noqa: E402

ANSWER = " ".join(f"word{i}" for i in range(20))
PROMPT = "hello there, how are you today"


def pct(values: list[float], p: int) -> float:
    return statistics.quantiles(values, n=100)[p - 1] if len(values) >= 2 else values[0]


class Socket:
    def __init__(self, ws):
        self.ws = ws
        self.ids = 0

    async def first_token(self, agent: str, peer: str) -> float:
        self.ids += 1
        start = time.perf_counter()
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": self.ids, "method": "chat.send",
                                       "params": {"text": PROMPT, "agent": agent, "peer": peer}}))
        first = None
        while True:
            msg = json.loads(await self.ws.recv())
            if msg.get("method") != "chat.event":
                assert "result" in msg, msg
                continue
            event = msg["params"]
            if event["type"] == "delta" and first is None:
                first = time.perf_counter() - start
            if event["type"] in ("done", "error"):
                assert event["type"] == "done", event
                return first * 1000


class Api:
    def __init__(self, client: httpx.AsyncClient, url: str):
        self.client = client
        self.url = url

    async def first_token(self, agent: str, conversation: str | None) -> float:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        if conversation:
            headers["X-Exoclaw-Conversation"] = conversation
        body = {"model": agent, "messages": [{"role": "user", "content": PROMPT}], "stream": True}
        start = time.perf_counter()
        first = None
        async with self.client.stream("POST", self.url, json=body, headers=headers) as response:
            assert response.status_code == 200, await response.aread()
            # Read to the end, past [DONE], as the OpenAI SDK does: a response read only in part closes
            # its HTTP/1.1 connection, and the next request would pay for a new one.
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                assert "error" not in chunk, chunk
                if first is None and chunk["choices"] and chunk["choices"][0]["delta"].get("content"):
                    first = time.perf_counter() - start
        return first * 1000


async def measure(port: int, agent: str, sessions: str, runs: int) -> tuple[list[float], list[float]]:
    ws_times, api_times = [], []
    peer = f"bench-{uuid.uuid4().hex[:8]}"
    async with connect(f"ws://127.0.0.1:{port}/ws?token={TOKEN}") as ws, \
            httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=1)) as client:
        sock, api = Socket(ws), Api(client, f"http://127.0.0.1:{port}/v1/chat/completions")
        for n in range(runs):
            by_ws = lambda: sock.first_token(agent, peer if sessions == "conversation" else f"{peer}-{n}")  # noqa: E731
            by_api = lambda: api.first_token(agent, peer if sessions == "conversation" else None)  # noqa: E731
            if n % 2:
                api_times.append(await by_api())
                ws_times.append(await by_ws())
            else:
                ws_times.append(await by_ws())
                api_times.append(await by_api())
    return ws_times, api_times


async def main(args) -> None:
    # Both clients send runs back to back; the per-connection and per-token rate limits (client
    # protections, not part of a run's cost) are raised out of the way.
    os.environ["GATEWAY_RATE"] = os.environ["GATEWAY_BURST"] = "100000"
    os.environ["OPENAI_COMPAT_RATE"] = os.environ["OPENAI_COMPAT_BURST"] = "100000"
    os.environ["BENCH_KEY"] = "sk-bench"
    fake = anthropic_server.FakeAnthropic(lambda request: anthropic_server.message(Text(ANSWER))).start()
    seed = (f"\nAgent.objects.create(name='bench', provider='anthropic', model='m', base_url='{fake.base_url}', "
            "api_key_env='BENCH_KEY')\n")
    with tempfile.TemporaryDirectory() as tmp:
        cluster = Cluster(Path(tmp), None, f"surrealkv://{tmp}/sessions", f"sqlite:///{tmp}/db.sqlite3", workers=0, seed=seed)
        try:
            await measure(cluster.port, "helper", "fresh", 20)  # warm-up: connections, compiled code
            print(f"time to first streamed token, {args.runs} runs per way, alternating (ms)")
            print(f"{'agent':<8} {'sessions':<13} {'way':<10} {'median':>8} {'p90':>8} {'p99':>8}   ratio API/WS (median, p90)")
            for agent in args.agents:
                for sessions in args.sessions:
                    ws_times, api_times = await measure(cluster.port, agent, sessions, args.runs)
                    for way, values in (("websocket", ws_times), ("/v1 API", api_times)):
                        print(f"{agent:<8} {sessions:<13} {way:<10} {statistics.median(values):8.2f} "
                              f"{pct(values, 90):8.2f} {pct(values, 99):8.2f}", end="")
                        if way == "/v1 API":
                            print(f"   {statistics.median(api_times) / statistics.median(ws_times):.2f}x, "
                                  f"{pct(api_times, 90) / pct(ws_times, 90):.2f}x", end="")
                        print()
        finally:
            cluster.stop()
            fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=200, help="runs per way, per agent and session kind")
    parser.add_argument("--agents", nargs="+", default=["helper", "bench"], choices=["helper", "bench"],
                        help="helper: the echo agent (no LLM time); bench: a fake Anthropic LLM on loopback")
    parser.add_argument("--sessions", nargs="+", default=["fresh", "conversation"], choices=["fresh", "conversation"],
                        help="a new session per run, or one conversation for all")
    asyncio.run(main(parser.parse_args()))
