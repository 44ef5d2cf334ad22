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
Rounds alternate between the contenders so machine noise hits them alike.
"""

import argparse
import asyncio
import hashlib
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


if __name__ == "__main__":
    main()
