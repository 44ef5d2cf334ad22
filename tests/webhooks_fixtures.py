"""Fixtures for the channel tests: a fake Telegram Bot API on loopback and adapter plugin rows.

The fake speaks the Bot API's documented shapes: `POST /bot<token>/sendMessage` with a JSON body,
answered with `{"ok": true, "result": Message}` or `{"ok": false, "error_code", "description",
"parameters"?}`. Tests script failures in advance (e.g. one 429 with `retry_after`) and read back
every request it received. Paths outside `/bot...` stand in for a generic webhook receiver and
are answered `{"received": true}`.
"""

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parent.parent / "sandbox" / "plugins"
TEST_PLUGINS = Path(__file__).resolve().parent / "plugins"
BOT_TOKEN = "123456:TEST-token_abc"


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    json: object
    raw: bytes


@dataclass
class FakeTelegram:
    token: str
    url: str = ""
    received: list[Received] = field(default_factory=list)
    scripted: list[tuple[int, dict]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    next_message_id: int = 1000

    def fail_next(self, error_code: int, description: str, **parameters) -> None:
        body = {"ok": False, "error_code": error_code, "description": description}
        if parameters:
            body["parameters"] = parameters
        with self.lock:
            self.scripted.append((error_code, body))

    def requests(self) -> list[Received]:
        with self.lock:
            return list(self.received)

    def sent_messages(self) -> list[dict]:
        with self.lock:
            return [r.json for r in self.received if r.path == f"/bot{self.token}/sendMessage"]

    def answer(self, method: str, path: str, headers: dict, raw: bytes) -> tuple[int, dict]:
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with self.lock:
            self.received.append(Received(method, path, headers, body, raw))
            if self.scripted:
                return self.scripted.pop(0)
            if not path.startswith("/bot"):
                return 200, {"received": True}
            if not path.startswith(f"/bot{self.token}/"):
                return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
            if path != f"/bot{self.token}/sendMessage":
                return 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            if not isinstance(body, dict) or "chat_id" not in body:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat_id is empty"}
            if not body.get("text"):
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
            self.next_message_id += 1
            chat = {"id": body["chat_id"], "type": "private"}
            message = {"message_id": self.next_message_id, "chat": chat, "date": int(time.time()), "text": body["text"]}
            return 200, {"ok": True, "result": message}


def _handler(fake: FakeTelegram):
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status, body = fake.answer("POST", self.path, dict(self.headers), raw)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_PUT = do_POST

        def log_message(self, *args):
            pass

    return Handler


@pytest.fixture
def fake_telegram():
    fake = FakeTelegram(token=BOT_TOKEN)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(fake))
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


def adapter_plugin(name: str):
    """The sample adapter `name` (telegram, generic) or the test-only trap_adapter, as a Plugin row."""
    from sandbox.models import Plugin

    folder = TEST_PLUGINS if name == "trap_adapter" else PLUGINS
    plugin = Plugin(name=name, wasm_path=str(folder / f"{name}.wasm"), abi=Plugin.Abi.CHANNEL_ADAPTER)
    plugin.clean()
    plugin.save()
    # With its grants loaded, as the webhook code loads adapters: calling it then needs no query.
    return Plugin.objects.prefetch_related("grants").get(pk=plugin.pk)


@pytest.fixture(autouse=True)
def clear_endpoint_cache():
    """Each test's database is new, so no endpoint cached by an earlier test may survive into it."""
    from webhooks.endpoints import clear_cache

    clear_cache()
    yield
    clear_cache()
