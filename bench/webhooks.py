"""Webhook ingress against the floor of its own stack.

Starts one daphne serving exoclaw plus /bare/ (bench/webhooks_urls.py: an async Django view that
reads the body and answers JSON), then POSTs signed generic-webhook bodies over keep-alive
connections and compares, in the same run:

- skipped:  `POST /hooks/bench/` with an event the adapter skips — size check, HMAC and timestamp,
            the replay record, JSON, the adapter's parse_incoming in the sandbox.
- accepted: the same with a message — plus the dedupe insert and the hand-off to the background run
            (no binding matches, so the run ends at routing and does not compete for the cores).

Each figure is the best of --rounds alternating measurements; median, p99 and requests/s, with the
ratio to /bare/.

    .venv/bin/python bench/webhooks.py
    .venv/bin/python bench/webhooks.py --sequential 500 --connections 20 --per-connection 25
"""

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import sys
import tempfile
import time

import httpx
from benchlib import best_of, bench_env, free_port, manage, ratio_row, start_daphne, summarise

SECRET = "bench-secret"
_ids = itertools.count()


def start_exoclaw(port: int, var_dir: str):
    env = bench_env(
        var_dir, DJANGO_SETTINGS_MODULE="bench.webhooks_settings", BENCH_WEBHOOK_SECRET=SECRET, LOG_LEVEL="ERROR"
    )
    manage(env, "migrate", "--noinput")
    manage(env, "shell", "-c", (
        "from sandbox.models import Plugin; from webhooks.models import ChannelEndpoint\n"
        "p = Plugin(name='generic', wasm_path='sandbox/plugins/generic.wasm'); p.clean(); p.save()\n"
        "ChannelEndpoint.objects.create(name='bench', adapter=p, secret_env='BENCH_WEBHOOK_SECRET', sender_policy='open')"
    ))  # fmt: skip
    return start_daphne("exoclaw.asgi:application", port, env)


def request(kind: str) -> tuple[str, bytes, dict]:
    n = next(_ids)
    event = {"id": f"evt-{n}", "account": "acme", "peer": f"user-{n % 50}", "text": "hello from the bench"}
    if kind == "skipped":
        event["type"] = "typing"
    body = json.dumps(event).encode()
    timestamp = str(int(time.time()))
    signature = "sha256=" + hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    path = "/bare/" if kind == "bare" else "/hooks/bench/"
    return path, body, {"Content-Type": "application/json", "X-Exoclaw-Timestamp": timestamp, "X-Exoclaw-Signature": signature}


async def posts(client: httpx.AsyncClient, kind: str, n: int, latencies: list[float]) -> None:
    expected = {"bare": "bytes", "skipped": "skipped", "accepted": "event"}[kind]
    for _ in range(n):
        path, body, headers = request(kind)
        t0 = time.perf_counter()
        response = await client.post(path, content=body, headers=headers)
        latencies.append(time.perf_counter() - t0)
        assert response.status_code == 200 and expected in response.json(), response.text


async def measure(base: str, kind: str, connections: int, each: int) -> dict:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        await posts(client, kind, 1, [])
        latencies: list[float] = []
        t0 = time.perf_counter()
        await asyncio.gather(*(posts(client, kind, each, latencies) for _ in range(connections)))
        elapsed = time.perf_counter() - t0
    return summarise(latencies, elapsed)


async def run(args) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="exoclaw-bench-") as var_dir:
        proc = start_exoclaw(port, var_dir)
        try:
            base = f"http://127.0.0.1:{port}"
            rows = []
            for label, conns, each in (("1 connection", 1, args.sequential),
                                       (f"{args.connections} connections", args.connections, args.per_connection)):
                results = {k: [] for k in ("bare", "skipped", "accepted")}
                # Alternate so drift in machine load hits all alike; keep each figure's best round.
                for _ in range(args.rounds):
                    for kind in results:
                        print(f"{label}: {kind} …", file=sys.stderr)
                        results[kind].append(await measure(base, kind, conns, each))
                best = {k: best_of(r) for k, r in results.items()}
                rows.append(ratio_row(f"{label}, skipped", best["bare"], best["skipped"], width=30))
                rows.append(ratio_row(f"{label}, accepted", best["bare"], best["accepted"], width=30))
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"{'POST /hooks/ vs /bare/':<30} {'bare':>8} {'hook':>8} {'ratio':>7} {'bare':>8} {'hook':>8} {'ratio':>7}"
          f" {'bare':>8} {'hook':>8} {'ratio':>7}")
    print(f"{'':<30} {'median ms':>25} {'p99 ms':>25} {'requests/s':>25}")
    for line in rows:
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequential", type=int, default=1000, help="POSTs over the single connection")
    parser.add_argument("--connections", type=int, default=20, help="concurrent connections in the second test")
    parser.add_argument("--per-connection", type=int, default=50, help="POSTs per concurrent connection")
    parser.add_argument("--rounds", type=int, default=2, help="alternating measurements per endpoint (best kept)")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
