"""Fixtures for the sandbox tests: real plug-ins, a real host, a real loopback HTTP server."""

import asyncio
import hashlib
import http.server
import threading
from pathlib import Path

import pytest

from sandbox.host import Host, PluginSpec

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "sandbox" / "plugins"
TEST_PLUGINS = ROOT / "tests" / "plugins"


def wasm_path(name: str) -> Path:
    sample = SAMPLES / f"{name}.wasm"
    return sample if sample.exists() else TEST_PLUGINS / f"{name}.wasm"


def spec(name: str, **kwargs) -> PluginSpec:
    path = wasm_path(name)
    return PluginSpec(name=name, sha256=hashlib.sha256(path.read_bytes()).hexdigest(), wasm_path=str(path), **kwargs)


def started_event():
    """An asyncio.Event and an `on_start` callback for Host.call that sets it."""
    event = asyncio.Event()
    return event, event.set


@pytest.fixture
def host(caplog):
    h = Host(max_workers=16)
    yield h
    h.shutdown()
    # A cancelled call reports CancelledError even when Extism failed to stop the plug-in; the host
    # then logs the runaway, whose thread spins on and keeps the test process from ever exiting.
    runaways = [r.getMessage() for r in caplog.get_records("call") if "could not be stopped" in r.getMessage()]
    assert not runaways, f"a plug-in call kept running after its cancel: {runaways}"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f'{{"path": "{self.path}", "greeting": "hello from loopback"}}'.encode()
        self.send_response(404 if self.path.startswith("/missing") else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def loopback_http():
    """A real HTTP server on a free loopback port; yields its port. Reach it as 127.0.0.1 or localhost."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()
