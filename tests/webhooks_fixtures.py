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
    return Plugin.objects.prefetch_related("grants__http_secrets").get(pk=plugin.pk)


@pytest.fixture(autouse=True)
def clear_endpoint_cache():
    """Each test's database is new, so no endpoint cached by an earlier test may survive into it."""
    from webhooks.endpoints import clear_cache

    clear_cache()
    yield
    clear_cache()


# --- Slack and Discord: fake APIs, and request bodies as the platforms document them -----------

SLACK_BOT_TOKEN = "xoxb-1234-5678-TESTtoken"
SLACK_SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
SLACK_TEAM, SLACK_APP, SLACK_BOT_USER = "T0TEAM001", "A0APP0001", "U0BOT0001"


@pytest.fixture
def fake_slack():
    from tests.fakes.chat_apis import FakeSlack

    server = FakeSlack(SLACK_BOT_TOKEN).start()
    yield server
    server.stop()


@pytest.fixture
def fake_discord():
    from tests.fakes.chat_apis import FakeDiscord

    server = FakeDiscord().start()
    yield server
    server.stop()


def slack_event_callback(event: dict, event_id: str = "Ev0SLACK0001", team: str = SLACK_TEAM) -> dict:
    """An Events API `event_callback` envelope around `event`, as Slack sends it."""
    return {
        "token": "XXYYZZ",
        "team_id": team,
        "api_app_id": SLACK_APP,
        "event": event,
        "type": "event_callback",
        "event_id": event_id,
        "event_time": 1712345678,
        "authorizations": [
            {"enterprise_id": None, "team_id": team, "user_id": SLACK_BOT_USER, "is_bot": True,
             "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-eyJldCI6ImFwcF9tZW50aW9uIn0",
    }


def slack_mention(text: str, user: str = "U0ADA0001", channel: str = "C0GENERAL", ts: str = "1712345678.000100",
                  thread_ts: str | None = None, event_id: str = "Ev0SLACK0001", team: str = SLACK_TEAM) -> dict:
    event = {
        "type": "app_mention",
        "user": user,
        "text": f"<@{SLACK_BOT_USER}> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "team": team,
    }
    if thread_ts:
        event["thread_ts"] = thread_ts
    return slack_event_callback(event, event_id, team)


def slack_dm(text: str, user: str = "U0ADA0001", channel: str = "D0DIRECT1", ts: str = "1712345679.000200",
             event_id: str = "Ev0SLACK0002", **extra) -> dict:
    event = {"type": "message", "channel_type": "im", "user": user, "text": text, "ts": ts, "channel": channel,
             "event_ts": ts, **extra}
    return slack_event_callback(event, event_id)


def slack_headers(body: bytes, timestamp: int | None = None, secret: str = SLACK_SIGNING_SECRET, **extra) -> dict:
    """Signed as Slack signs, by Slack's own SDK."""
    import time

    from slack_sdk.signature import SignatureVerifier

    ts = str(int(time.time()) if timestamp is None else timestamp)
    signature = SignatureVerifier(secret).generate_signature(timestamp=ts, body=body.decode())
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature, **extra}


DISCORD_APP = "1100000000000000001"
DISCORD_GUILD = "1200000000000000001"


class DiscordSigner:
    """The application's key pair: Discord signs with the private key, exoclaw checks with the public one."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

        self._key = Ed25519PrivateKey.generate()
        self.public_hex = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw).hex()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict:
        import time

        ts = str(int(time.time()) if timestamp is None else timestamp)
        return {"X-Signature-Ed25519": self._key.sign(ts.encode() + body).hex(), "X-Signature-Timestamp": ts}


def discord_ping() -> dict:
    return {"id": "1300000000000000001", "application_id": DISCORD_APP, "type": 1, "token": "ping-token", "version": 1}


def discord_ask(text: str, user: str = "1400000000000000001", channel: str = "1500000000000000001",
                guild: str | None = DISCORD_GUILD, interaction_id: str = "1300000000000000002",
                token: str = "aW50ZXJhY3Rpb246MTMwMDAwMDAwMDAwMDAwMDAwMjp0ZXN0dG9rZW4") -> dict:
    """`/ask text:<text>` as Discord posts it: in a server the user is in `member`, in a DM in `user`."""
    person = {"id": user, "username": "ada", "discriminator": "0", "global_name": "Ada"}
    interaction = {
        "id": interaction_id,
        "application_id": DISCORD_APP,
        "type": 2,
        "token": token,
        "version": 1,
        "channel_id": channel,
        "channel": {"id": channel, "type": 0 if guild else 1},
        "locale": "en-US",
        "app_permissions": "2248473465835073",
        "data": {"id": "1600000000000000001", "name": "ask", "type": 1,
                 "options": [{"name": "text", "type": 3, "value": text}]},
    }
    if guild:
        interaction["guild_id"] = guild
        interaction["member"] = {"user": person, "roles": [], "permissions": "2248473465835073", "nick": None}
    else:
        interaction["user"] = person
    return interaction
