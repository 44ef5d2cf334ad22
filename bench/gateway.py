"""Gateway round trips against the floor of its own stack.

Starts one daphne serving both the gateway (/ws) and a bare Channels AsyncWebsocketConsumer echo
(/echo, bench/gateway_asgi.py), then measures `ping` round trips over one connection and over many
concurrent connections, for both, in the same run. Prints median and p99 latency and requests/s side
by side, with the gateway/echo ratio (goal: at most 1.5x). Each figure is the best of --rounds
alternating measurements.

    .venv/bin/python bench/gateway.py                 # defaults: 3000 sequential, 200 connections x 40
    .venv/bin/python bench/gateway.py --connections 50 --per-connection 100
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time

from benchlib import best_of, bench_env, free_port, manage, ratio_row, start_daphne, summarise
from websockets.asyncio.client import connect

PING = json.dumps({"jsonrpc": "2.0", "method": "ping", "id": 1})


async def round_trips(ws, n: int, latencies: list[float]) -> None:
    for _ in range(n):
        t0 = time.perf_counter()
        await ws.send(PING)
        await ws.recv()
        latencies.append(time.perf_counter() - t0)


async def measure(url: str, connections: int, per_connection: int) -> dict:
    sockets = [await connect(url, compression=None, ping_interval=None, max_queue=None) for _ in range(connections)]
    try:
        for ws in sockets:  # warm-up, and a check that the endpoint answers as expected
            await ws.send(PING)
            reply = await ws.recv()
            assert "pong" in reply or reply == PING, reply
        latencies: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(round_trips(ws, per_connection, latencies) for ws in sockets))
        elapsed = time.perf_counter() - t0
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets))
    return summarise(latencies, elapsed)


async def run(args) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="exoclaw-bench-") as var_dir:
        env = bench_env(
            var_dir,
            DJANGO_SETTINGS_MODULE="exoclaw.settings",
            EXOCLAW_BIND=f"127.0.0.1:{port}",  # the bench client is on loopback: no token needed
            GATEWAY_RATE="1000000000",  # measure the gateway's work, not its rate limit
            GATEWAY_BURST="1000000000",
            LOG_LEVEL="WARNING",
        )
        manage(env, "migrate", "--noinput")
        proc = start_daphne("bench.gateway_asgi:application", port, env)
        try:
            base = f"ws://127.0.0.1:{port}"
            rows = []
            for name, conns, each in (
                ("1 connection", 1, args.sequential),
                (f"{args.connections} connections", args.connections, args.per_connection),
            ):
                results = {"echo": [], "gateway": []}
                # Alternate the two endpoints so drift in machine load hits both alike; keep each metric's
                # best round, the one least disturbed by other processes on a shared machine.
                for _ in range(args.rounds):
                    for target, path in (("echo", "/echo"), ("gateway", "/ws")):
                        print(f"{name}: {target} …", file=sys.stderr)
                        results[target].append(await measure(base + path, conns, each))
                rows.append(ratio_row(name, best_of(results["echo"]), best_of(results["gateway"])))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{'ping round trip':<26} {'echo':>8} {'gateway':>8} {'ratio':>7} {'echo':>8} {'gateway':>8} {'ratio':>7}"
          f" {'echo':>8} {'gateway':>8} {'ratio':>7}")
    print(f"{'':<26} {'median ms':>25} {'p99 ms':>25} {'requests/s':>25}")
    for line in rows:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=3000, help="round trips over the single connection")
    parser.add_argument("--connections", type=int, default=200, help="concurrent connections in the second test")
    parser.add_argument("--per-connection", type=int, default=40, help="round trips per concurrent connection")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurements per endpoint (best kept)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
