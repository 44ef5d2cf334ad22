"""A real deployment for tests: daphne plus `runworker agent-runs` processes over Redis, sharing one
PostgreSQL database (a throwaway one, `tests/postgres_fixtures.py`) and one session store (the
test-only SurrealDB stand-in over ws://)."""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "exo_cluster_" + uuid.uuid4().hex

# EXOCLAW_TOKEN authenticates only through the row `bootstrap` stores for it; this stores that row alone.
SEED_TOKEN = """
import os, django; django.setup()
from exoclaw.management.commands.bootstrap import Command
Command()._bootstrap_token()
"""

SEED = SEED_TOKEN + """
from agents.models import Agent
from sandbox.models import CapabilityGrant, Plugin
from sandbox.samples import register_samples
register_samples()
spin = Plugin(name="spin", wasm_path="tests/plugins/loop.wasm",
              declared_tools=[{"name": "spin", "description": "Never returns.", "input_schema": {"type": "object"}}])
spin.full_clean(); spin.save()
CapabilityGrant.objects.create(plugin=spin, timeout_ms=int(__import__("os").environ["SPIN_TIMEOUT_MS"]))
Agent.objects.create(name="helper", provider="echo", tools=["echo", "spin"])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proc:
    """A subprocess whose output is kept; `ready` is set when a line contains `marker`."""

    def __init__(self, args: list[str], env: dict, marker: str):
        self.lines: list[str] = []
        self.ready = threading.Event()
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.marker = marker
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)
            if self.marker in line:
                self.ready.set()
        self.ready.set()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, what: str):
        assert self.ready.wait(30) and self.proc.poll() is None, f"{what} did not start:\n{self.output()}"

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return "".join(self.lines)


class Cluster:
    def __init__(self, tmp_path: Path, redis_url: str | None, surreal_url: str, database_url: str, workers: int = 2,
                 lease: float = 1.0, seed: str = "", log_level: str = "INFO", env: dict | None = None):
        """Without `redis_url`, one daphne runs everything in-process (then `workers` must be 0)."""
        self.prefix = f"exoclaw-cluster-{uuid.uuid4().hex[:10]}"
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "exoclaw.settings",
            "EXOCLAW_VAR_DIR": str(tmp_path),
            "DATABASE_URL": database_url,
            "SURREALDB_URL": surreal_url,
            "EXOCLAW_TOKEN": TOKEN,
            "REDIS_URL": redis_url or "",
            "REDIS_PREFIX": self.prefix,
            "AGENT_RUN_LEASE_SECONDS": str(lease),
            "SPIN_TIMEOUT_MS": "4000",
            "LOG_LEVEL": log_level,
            "PYTHONUNBUFFERED": "1",
            **(env or {}),
        }
        self.env.pop("EXOCLAW_BIND", None)
        run = lambda args: subprocess.run(args, cwd=ROOT, env=self.env, check=True, capture_output=True, text=True)  # noqa: E731
        run([sys.executable, "manage.py", "migrate", "--noinput"])
        run([sys.executable, "-c", SEED + seed])
        self.port = free_port()
        self.daphne = Proc([sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{self.port}"], self.env,
                           f"Listening on TCP address 127.0.0.1:{self.port}")
        # The workers alternate between the command's two names: `runworker agent-runs` and `worker`.
        names = (["runworker", "agent-runs"], ["worker"])
        self.workers = [
            Proc([sys.executable, "manage.py", *names[i % 2]], self.env, "Running worker for channels")
            for i in range(workers)
        ]
        self.daphne.wait_ready("daphne")
        for w in self.workers:
            w.wait_ready("runworker")

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws?token={TOKEN}"

    def owner_pid(self, redis, run_id: str) -> int | None:
        owner = redis.hget(f"{self.prefix}:runs:run:{run_id}", "owner")
        return int(owner.decode().split(":")[1]) if owner else None

    def stop(self, redis=None):
        for p in [self.daphne, *self.workers]:
            p.stop()
        if redis is not None:
            keys = list(redis.scan_iter(match=f"{self.prefix}*"))
            if keys:
                redis.delete(*keys)


async def rpc(ws, method: str, params: dict, rid: int) -> None:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params}))
