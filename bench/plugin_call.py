"""Per-call cost of exoclaw's plugin host against bare Extism, measured in the same run.

    .venv/bin/python bench/plugin_call.py [--calls 2000] [--rounds 5] [--plugin echo] [--gap-ms 0]

Baseline: the bare `extism` SDK doing what NOTES.md measured as the floor for an isolated call:
CompiledPlugin once, then a fresh Plugin per call, call, free.
exoclaw (async): `await Host.call(...)`: grant applied (limits, deny-all hosts/paths), a fresh
instance per call, the hop to a worker thread and back, the per-plugin concurrency limit and error
mapping. The worker wakes the caller first and then frees the instance and makes the next one.
exoclaw (sync): `Host.run(...)`, the same on the calling thread (what runplugin uses).
Python thread-pool hop alone: submitting a no-op to a `ThreadPoolExecutor` and awaiting it, what any
async wrapper built on Python threads pays before it calls Extism (for comparison).
Cold compile: the first call of a plugin under a new grant, against a bare CompiledPlugin.
HTTP GET: the sample http_get plugin fetching a small body from a loopback server, through exoclaw's
own `http_request` (`Host.run`: grant check per request, resolution, connect to the checked address,
record) against the same GET through Extism's built-in `http_request` (bare CompiledPlugin with
`allowed_hosts`, a fresh Plugin per call), once against a server that closes each connection
(HTTP/1.0: both pay a TCP connect per request) and once against one that keeps them open (HTTP/1.1:
exoclaw reuses pooled connections; Extism's built-in connects afresh for every request).
Rounds alternate between the contenders so machine noise hits them alike.
"""

import argparse
import asyncio
import hashlib
import http.server
import json
import multiprocessing
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import extism  # noqa: E402
from extism.extism import CompiledPlugin  # noqa: E402

from sandbox.host import Host, PluginSpec  # noqa: E402
from sandbox.manifest import Grant, build_manifest  # noqa: E402


def percentile(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def bare_calls(wasm: bytes, sha: str, grant: Grant, function: str, data: bytes, n: int, gap: float) -> list[float]:
    compiled = CompiledPlugin(build_manifest(wasm, sha, grant), False, [])
    times = []
    for _ in range(n):
        time.sleep(gap)
        start = time.perf_counter()
        with extism.Plugin(compiled, functions=[]) as plugin:
            plugin.call(function, data)
        times.append(time.perf_counter() - start)
    return times


def sync_calls(host: Host, spec: PluginSpec, grant: Grant, function: str, data: bytes, n: int, gap: float) -> list[float]:
    times = []
    for _ in range(n):
        time.sleep(gap)
        start = time.perf_counter()
        host.run(spec, function, data, grant)
        times.append(time.perf_counter() - start)
    return times


async def async_calls(host: Host, spec: PluginSpec, grant: Grant, function: str, data: bytes, n: int,
                      gap: float) -> list[float]:
    times = []
    for _ in range(n):
        if gap:
            await asyncio.sleep(gap)
        start = time.perf_counter()
        await host.call(spec, function, data, grant)
        times.append(time.perf_counter() - start)
    return times


async def hops(executor, n: int) -> list[float]:
    """What any async wrapper on Python threads pays: a no-op through a thread pool, awaited."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await asyncio.wrap_future(executor.submit(int))
        times.append(time.perf_counter() - start)
    return times


def cold_compiles(wasm: bytes, spec: PluginSpec, n: int) -> tuple[list[float], list[float]]:
    bare, ours = [], []
    sha = spec.sha256
    for i in range(n):
        grant = Grant(timeout_ms=10_000 + i)  # a new grant fingerprint: nothing cached
        start = time.perf_counter()
        CompiledPlugin(build_manifest(wasm, sha, grant), False, [])
        bare.append(time.perf_counter() - start)
        host = Host(max_workers=1)
        start = time.perf_counter()
        host.compile_ms(spec, grant)
        ours.append(time.perf_counter() - start)
        host.shutdown()
    return bare, ours


class _Small(http.server.BaseHTTPRequestHandler):
    # HTTP/1.0: the server closes each connection, so every request pays a TCP connect.
    def do_GET(self):
        body = b'{"temperature": 21.5, "city": "Rome"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _KeepAlive(_Small):
    # HTTP/1.1: the server keeps connections open, as real APIs do; a client may reuse them. (Its
    # headers and body go out in two writes: without TCP_NODELAY the client's delayed ACK adds 40 ms.)
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True


def _serve(ready, keep_alive=False):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KeepAlive if keep_alive else _Small)
    ready.put(server.server_address[1])
    server.serve_forever()


def http_gets(n: int, rounds: int, keep_alive: bool) -> tuple[list[float], list[float]]:
    """The same GET through Extism's built-in http_request and through exoclaw's, alternating rounds."""
    # The server runs in a process of its own: in this one it would compete for the GIL with the
    # Python side of exoclaw's http_request, which Extism's built-in (Rust) never holds.
    ready = multiprocessing.Queue()
    server = multiprocessing.Process(target=_serve, args=(ready, keep_alive), daemon=True)
    server.start()
    port = ready.get(timeout=30)
    path = ROOT / "sandbox" / "plugins" / "http_get.wasm"
    wasm = path.read_bytes()
    sha = hashlib.sha256(wasm).hexdigest()
    data = json.dumps({"params": {"name": "fetch", "arguments": {"url": f"http://127.0.0.1:{port}/now"}}}).encode()
    manifest = build_manifest(wasm, sha, Grant())
    manifest["allowed_hosts"] = ["127.0.0.1"]  # Extism's own check, for the built-in
    compiled = CompiledPlugin(manifest, False, [])
    host = Host(max_workers=1)
    spec = PluginSpec(name="http_get", sha256=sha, wasm_path=str(path))
    grant = Grant(allowed_hosts=(f"127.0.0.1:{port}",), http_requests_per_minute=0)  # no rate limit in a benchmark
    for _ in range(20):  # warm both (compile, the first connections, httpx's client)
        extism.Plugin(compiled, functions=[]).call("call", data)
        host.run(spec, "call", data, grant)
    builtin, ours = [], []
    for _ in range(rounds):
        for _ in range(n):
            start = time.perf_counter()
            with extism.Plugin(compiled, functions=[]) as plugin:
                out = plugin.call("call", data)
            builtin.append(time.perf_counter() - start)
        assert b"Rome" in out, out
        for _ in range(n):
            start = time.perf_counter()
            out = host.run(spec, "call", data, grant).output
            ours.append(time.perf_counter() - start)
        assert b"Rome" in out, out
    host.shutdown()
    server.terminate()
    server.join()
    return builtin, ours


def row(name, times, baseline=None):
    med, p99 = statistics.median(times) * 1e6, percentile(times, 99) * 1e6
    text = f"{name:<26} median {med:9.1f} µs   p99 {p99:9.1f} µs"
    if baseline:
        bmed, bp99 = statistics.median(baseline) * 1e6, percentile(baseline, 99) * 1e6
        text += f"   ratio median {med / bmed:5.2f}  p99 {p99 / bp99:5.2f}"
    return text


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000, help="Calls per contender per round.")
    parser.add_argument("--rounds", type=int, default=5, help="Alternating rounds.")
    parser.add_argument("--plugin", default="echo", help="A plugin in sandbox/plugins (its raw export of the same name is called).")
    parser.add_argument("--input", default="hello, sandbox", help="The call's input.")
    parser.add_argument("--http-calls", type=int, default=300, help="HTTP GETs per contender per round (0: skip).")
    parser.add_argument("--gap-ms", type=float, default=0.0,
                        help="Idle time before each call (0: back to back). With a gap the cores go idle between calls.")
    args = parser.parse_args()

    path = ROOT / "sandbox" / "plugins" / f"{args.plugin}.wasm"
    wasm = path.read_bytes()
    sha = hashlib.sha256(wasm).hexdigest()
    spec = PluginSpec(name=args.plugin, sha256=sha, wasm_path=str(path))
    grant = Grant()
    data = args.input.encode()
    host = Host(max_workers=4)
    host.run(spec, args.plugin, data, grant)  # compile outside the timings

    bare, sync, asynchronous, hop = [], [], [], []
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(max_workers=4)
    gap = args.gap_ms / 1000
    started = time.perf_counter()
    for done in range(args.rounds):
        bare += bare_calls(wasm, sha, grant, args.plugin, data, args.calls, gap)
        sync += sync_calls(host, spec, grant, args.plugin, data, args.calls, gap)
        asynchronous += loop.run_until_complete(async_calls(host, spec, grant, args.plugin, data, args.calls, gap))
        hop += loop.run_until_complete(hops(executor, args.calls))
        print(f"round {done + 1}/{args.rounds} done in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    loop.close()
    executor.shutdown()
    cold_bare, cold_ours = cold_compiles(wasm, spec, 30)
    host.shutdown()

    print(f"plugin {args.plugin} ({len(wasm)} bytes), {args.rounds} x {args.calls} calls each"
          f"{f', {args.gap_ms:g} ms apart' if args.gap_ms else ''}, extism {extism.extism_version()}")
    print(row("bare extism (baseline)", bare))
    print(row("exoclaw Host.run (sync)", sync, bare))
    print(row("exoclaw Host.call (async)", asynchronous, bare))
    print(row("Python thread-pool hop", hop))
    print(row("cold compile, bare", cold_bare))
    print(row("cold compile, exoclaw", cold_ours, cold_bare))
    if args.http_calls:
        for keep_alive in (False, True):
            builtin, ours = http_gets(args.http_calls, args.rounds, keep_alive)
            print(f"HTTP GET with http_get to a loopback server that {'keeps connections open (HTTP/1.1)' if keep_alive else 'closes each connection (HTTP/1.0)'}, "
                  f"{args.rounds} x {args.http_calls} each:")
            print(row("Extism built-in (baseline)", builtin))
            print(row("exoclaw http_request", ours, builtin))


if __name__ == "__main__":
    main()
