"""A live exoclaw (daphne via `manage.py serve`) for the chat clients' end-to-end tests, a TCP proxy in
front of it that can drop every connection at once, and Playwright driving Debian's Chromium."""

import asyncio
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from exoclaw.client import Gateway

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
ARTIFACTS.mkdir(exist_ok=True)
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]


# An echo agent allowed replies long enough to stop or cut off halfway: the demo agent stops at 1,024 words,
# which it streams in a fraction of a second.
LONG_REPLY_AGENT = (
    "from agents.models import Agent; "
    "Agent.objects.update_or_create(name='chatty', defaults={'provider': 'echo', 'max_tokens': 20000})"
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    """Block until something accepts on the port; fail with the server's log if it exits or never listens."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"exoclaw serve exited with {proc.returncode} before listening:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            # Each failed connect already waited for the kernel's refusal; a short pause avoids a busy loop.
            time.sleep(0.05)
    pytest.fail(f"exoclaw serve did not listen on {port} within {timeout}s:\n{log.read_text()[-4000:]}")


@contextmanager
def serving(args: list[str], port: int, log: Path, **popen):
    """`args` run from the project's root, its output in `log`, once it accepts on `port`; stopped on
    leaving (terminated, killed if it has not exited within 10 s)."""
    with log.open("w") as out:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, **popen)
    try:
        wait_for_port(port, proc, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@dataclass
class LiveServer:
    port: int
    token: str
    admin_password: str
    var_dir: Path
    env: dict

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def manage(self, *args, input: str | None = None, timeout: float = 60.0, env: dict | None = None):
        return subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=env or self.env, input=input,
            capture_output=True, text=True, timeout=timeout,
        )

    def with_gateway(self, work):
        """`await work(gw)` with a Python gateway client on the server's admin token, in a thread with a
        loop of its own (the caller's thread may own one: Playwright's sync API, pytest-asyncio)."""

        async def session():
            gw = await Gateway.connect(self.ws_url, self.token)
            try:
                return await work(gw)
            finally:
                await gw.close()

        with ThreadPoolExecutor(1) as pool:
            return pool.submit(asyncio.run, session()).result(timeout=60)

    def history(self, session_key: str) -> dict:
        """`sessions.history` of a session: its first 200 messages."""
        return self.with_gateway(lambda gw: gw.call("sessions.history", {"session_key": session_key, "limit": 200}))


@pytest.fixture(scope="session")
def exoclaw_server(tmp_path_factory):
    """`migrate`, `bootstrap`, then `serve` on a free loopback port, with its own var dir and the echo demo."""
    var_dir = tmp_path_factory.mktemp("exoclaw-live")
    token = "exo_" + secrets.token_urlsafe(32)
    password = secrets.token_urlsafe(12)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXOCLAW_", "REDIS_", "SURREALDB_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="exoclaw.settings",
        EXOCLAW_VAR_DIR=str(var_dir),
        EXOCLAW_TOKEN=token,
        EXOCLAW_ADMIN_PASSWORD=password,
        PYTHONUNBUFFERED="1",
    )
    port = free_port()
    server = LiveServer(port, token, password, var_dir, env)
    for step in (["migrate", "--noinput"], ["bootstrap"], ["shell", "-c", LONG_REPLY_AGENT]):
        done = server.manage(*step, timeout=120)
        assert done.returncode == 0, f"manage.py {' '.join(step[:2])} failed:\n{done.stdout}\n{done.stderr}"
    with serving([sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"], port, var_dir / "serve.log",
                 env=env):
        yield server


class CuttableProxy:
    """Forwards loopback TCP connections to the server. `cut()` closes every open one at once, as when a
    network path dies: the browser sees its socket closed from the far end and must reconnect."""

    def __init__(self, target_port: int):
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._upstreams: set[socket.socket] = set()
        self._lock = threading.Lock()
        self.frozen = threading.Event()
        self._freeze_after: bytes | None = None
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                self._open.update((client, upstream))
                self._upstreams.add(upstream)
            threading.Thread(target=self._pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket):
        try:
            while data := src.recv(65536):
                from_server = src in self._upstreams
                if self.frozen.is_set() and from_server:
                    continue  # frozen: what the server says is lost on the way, as on a dying link
                dst.sendall(data)
                marker = self._freeze_after
                if from_server and marker is not None and marker in data:
                    self._freeze_after = None
                    self.frozen.set()
        except OSError:
            pass
        finally:
            for s in (src, dst):
                self._close(s)

    def _close(self, s: socket.socket):
        with self._lock:
            self._open.discard(s)
            self._upstreams.discard(s)
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()

    def freeze_after(self, marker: bytes) -> None:
        """Deliver the next server chunk that contains `marker`, then nothing more from the server until
        the next cut. (daphne sends WebSocket frames uncompressed, so JSON text is visible on the wire.)"""
        self.frozen.clear()
        self._freeze_after = marker

    def cut(self) -> int:
        """Close every open connection, then let new ones through normally."""
        with self._lock:
            victims = list(self._open)
        for s in victims:
            self._close(s)
        self.frozen.clear()
        return len(victims)

    def close(self):
        self._listener.close()
        self.cut()


@pytest.fixture
def proxy(exoclaw_server):
    p = CuttableProxy(exoclaw_server.port)
    yield p
    p.close()


# Module scope: Playwright's sync API keeps an event loop running in this thread while it is open,
# which would break every asyncio test that runs after it.
@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing (CI=true: .ci/run should have installed it)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@contextmanager
def watched_page(chromium, name: str, **context_options):
    """A fresh browser context (no cookies, no storage) and page; its screenshot is kept under
    test-artifacts/ whether the test passed or not, and requests anywhere but loopback or uncaught
    errors in the page fail the test."""
    context = chromium.new_context(**{"viewport": {"width": 1100, "height": 760}, **context_options})
    context.set_default_timeout(15_000)
    page = context.new_page()
    outside = []
    local = ("http://127.0.0.1:", "ws://127.0.0.1:", "data:")
    page.on("request", lambda r: None if r.url.startswith(local) else outside.append(r.url))
    console_errors = []
    page.on("pageerror", lambda e: console_errors.append(str(e)))
    yield page
    try:
        page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
    finally:
        context.close()
    assert not outside, f"the page fetched from outside the server: {outside}"
    assert not console_errors, f"uncaught errors in the page: {console_errors}"


@pytest.fixture
def browser_page(chromium, request):
    with watched_page(chromium, request.node.name) as page:
        yield page


@pytest.fixture
def remote_page(chromium, request):
    """A page whose requests carry a proxy header, as when exoclaw sits behind a reverse proxy: the
    gateway's loopback exemption no longer applies, so the visitor must sign in."""
    with watched_page(chromium, request.node.name, extra_http_headers={"X-Forwarded-For": "203.0.113.9"}) as page:
        yield page
