"""What the benchmarks that drive a live daphne share: a free port, starting daphne, summarising latencies."""

import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bench_env(var_dir: str, **extra: str) -> dict:
    """The environment of a throwaway deployment in `var_dir`, on the in-memory channel layer."""
    env = {
        **os.environ,
        "EXOCLAW_VAR_DIR": var_dir,
        "DATABASE_URL": f"sqlite:///{var_dir}/db.sqlite3",
        "PYTHONPATH": str(ROOT),
        **extra,
    }
    env.pop("REDIS_URL", None)
    return env


def manage(env: dict, *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True, capture_output=True)


def start_daphne(app: str, port: int, env: dict) -> subprocess.Popen:
    """Serve the ASGI `app` on 127.0.0.1:`port` and return once it accepts connections."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-v", "0", "-b", "127.0.0.1", "-p", str(port), app], cwd=ROOT, env=env
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"daphne exited with code {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    sys.exit("daphne did not start listening within 30 s")


def summarise(latencies: list[float], elapsed: float) -> dict:
    """Median and p99 in ms and requests/s of one measurement (`latencies` in seconds)."""
    latencies = sorted(latencies)
    return {
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000,
        "rps": len(latencies) / elapsed,
    }


def ratio_row(name: str, base: dict, ours: dict, width: int = 26) -> str:
    """One table row: median, p99 and requests/s of the baseline and ours, each with ours/baseline."""
    return (
        f"{name:<{width}} {base['median_ms']:>8.3f} {ours['median_ms']:>8.3f} {ours['median_ms'] / base['median_ms']:>6.2f}x"
        f" {base['p99_ms']:>8.3f} {ours['p99_ms']:>8.3f} {ours['p99_ms'] / base['p99_ms']:>6.2f}x"
        f" {base['rps']:>8.0f} {ours['rps']:>8.0f} {base['rps'] / ours['rps']:>6.2f}x"
    )


def best_of(rounds: list[dict]) -> dict:
    """Each figure's best round: the one least disturbed by other processes on a shared machine."""
    return {
        "median_ms": min(m["median_ms"] for m in rounds),
        "p99_ms": min(m["p99_ms"] for m in rounds),
        "rps": max(m["rps"] for m in rounds),
    }
