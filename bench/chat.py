"""What a run costs on top of the LLM: `chat.send` to first delta and to `done`, minus the LLM's own time.

A fake Anthropic server on loopback (tests/fakes) answers every request with the same 20-word
streamed message. The baseline is the real Anthropic provider streaming that answer straight from
the fake server, in this process: the LLM's own time to first delta and to the end of the stream.
It is measured interleaved with the sequential runs (one baseline stream before each run), so a
change in the machine's load hits both alike. The same message goes through the whole product, over
WebSocket:

- in-process: one daphne (`manage.py serve`) with the in-memory channel layer and the embedded store;
- redis: one daphne and two `runworker agent-runs` over the real Redis, the session store behind the
  test-only SurrealDB stand-in (tests/surreal_ws_server.py) as a multi-process deployment needs;

each at 1 session (runs one after another) and at 100 concurrent sessions. Overhead is the run's time
minus the baseline median of the same deployment's sequential runs; medians and p99 are over all
runs, and runs/s is runs over wall time.

    .venv/bin/python bench/chat.py                       # defaults: 100 sequential, 100 sessions x 3 runs
    .venv/bin/python bench/chat.py --runs 50 --sessions 20 --per-session 2 --modes in-process
"""

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from websockets.asyncio.client import connect  # noqa: E402

from tests.fakes import anthropic_server  # noqa: E402
from tests.fakes.http import Text  # noqa: E402
from tests.runtime_cluster import Cluster  # noqa: E402

ANSWER = " ".join(f"word{i}" for i in range(20))
REDIS_URL = "redis://127.0.0.1:6379/0"


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98] if len(values) >= 2 else values[0]


def llm_alone(base_url: str):
    """The LLM's own time: the provider streaming the fake server's answer, no exoclaw around it."""
    import django

    django.setup()
    from agents.providers.anthropic import AnthropicProvider
    from agents.providers.base import LLMRequest, TextDelta

    provider = AnthropicProvider(base_url, "sk-bench")
    request = LLMRequest(model="m", messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}])

    async def once(first: list, total: list) -> None:
        start = time.perf_counter()
        seen = None
        async for ev in provider.stream(request):
            if isinstance(ev, TextDelta) and seen is None:
                seen = time.perf_counter() - start
        first.append(seen * 1000)
        total.append((time.perf_counter() - start) * 1000)

    return once


async def one_session(url: str, peer: str, runs: int, first: list, total: list, baseline=None) -> None:
    async with connect(url) as ws:
        for n in range(runs):
            if baseline is not None:
                await baseline()
            start = time.perf_counter()
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": n, "method": "chat.send",
                                      "params": {"text": "hi", "agent": "bench", "peer": peer}}))
            seen = None
            while True:
                msg = json.loads(await ws.recv())
                if msg.get("method") != "chat.event":
                    assert "result" in msg, msg
                    continue
                ev = msg["params"]
                if ev["type"] == "delta" and seen is None:
                    seen = time.perf_counter() - start
                if ev["type"] in ("done", "error"):
                    assert ev["type"] == "done", ev
                    break
            first.append(seen * 1000)
            total.append((time.perf_counter() - start) * 1000)


async def measure(url: str, sessions: int, per_session: int, baseline=None) -> tuple[list[float], list[float], float]:
    """Runs' times to first delta and to done, and runs/s over wall time."""
    first, total = [], []
    started = time.perf_counter()
    await asyncio.gather(*(one_session(url, f"s{i}-{uuid.uuid4().hex[:6]}", per_session, first, total, baseline)
                           for i in range(sessions)))
    return first, total, len(total) / (time.perf_counter() - started)


def row(label: str, values: list[float], base: float) -> str:
    med, tail = statistics.median(values), p99(values)
    return f"  {label:<22} {med:9.2f} {tail:9.2f} {med - base:14.2f} {tail - base:12.2f} {med / base:8.2f}x"


async def main(args) -> None:
    os.environ["BENCH_KEY"] = "sk-bench"  # the bench agent's api_key_env, inherited by the servers
    # One connection sends every sequential run: at more than 20 runs/s the gateway's per-connection
    # rate limit (a client protection, not part of a run's cost) would refuse chat.send.
    os.environ["GATEWAY_RATE"] = os.environ["GATEWAY_BURST"] = "100000"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exoclaw.settings_test")
    fake = anthropic_server.FakeAnthropic(lambda request: anthropic_server.message(Text(ANSWER))).start()
    seed = (f"\nAgent.objects.create(name='bench', provider='anthropic', model='m', base_url='{fake.base_url}', "
            "api_key_env='BENCH_KEY')\n")
    llm_once = llm_alone(fake.base_url)
    for mode in args.modes:
        with tempfile.TemporaryDirectory() as tmp:
            stand_in = None
            if mode == "redis":
                stand_in = subprocess.Popen([sys.executable, "tests/surreal_ws_server.py", "--url", "mem://", "--port", "0"],
                                            cwd=ROOT, stdout=subprocess.PIPE, text=True)
                surreal = stand_in.stdout.readline().split()[-1]
                cluster = Cluster(Path(tmp), REDIS_URL, surreal, f"sqlite:///{tmp}/db.sqlite3", workers=2, lease=10, seed=seed)
            else:
                cluster = Cluster(Path(tmp), None, f"surrealkv://{tmp}/sessions", f"sqlite:///{tmp}/db.sqlite3", workers=0, seed=seed)
            try:
                await measure(cluster.url, 4, 2)  # warm-up: connections, compiled code
                base_first, base_total = [], []
                first, total, _ = await measure(cluster.url, 1, args.runs, lambda: llm_once(base_first, base_total))
                bf, bt = statistics.median(base_first), statistics.median(base_total)
                print(f"\n{mode}: baseline (provider straight from the fake LLM, {args.runs} runs interleaved with the "
                      f"sequential ones): first delta median {bf:.2f} ms p99 {p99(base_first):.2f} ms; "
                      f"whole answer median {bt:.2f} ms p99 {p99(base_total):.2f} ms")
                print(f"{mode}  (ms)               median       p99  overhead med  overhead p99    ratio")
                # Runs/s over the runs' own time: the interleaved baseline streams are left out.
                print(f" 1 session(s) x {args.runs} runs: {len(total) / (sum(total) / 1000):.1f} runs/s")
                print(row("to first delta", first, bf))
                print(row("to done", total, bt))
                first, total, rate = await measure(cluster.url, args.sessions, args.per_session)
                print(f" {args.sessions} session(s) x {args.per_session} runs: {rate:.1f} runs/s")
                print(row("to first delta", first, bf))
                print(row("to done", total, bt))
            finally:
                import redis

                cluster.stop(redis.Redis.from_url(REDIS_URL) if mode == "redis" else None)
                if stand_in:
                    stand_in.terminate()
    fake.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100, help="sequential runs (and baseline runs)")
    parser.add_argument("--sessions", type=int, default=100, help="concurrent sessions")
    parser.add_argument("--per-session", type=int, default=3, help="runs per concurrent session")
    parser.add_argument("--modes", nargs="+", default=["in-process", "redis"], choices=["in-process", "redis"],
                        help="deployments to measure")
    asyncio.run(main(parser.parse_args()))
