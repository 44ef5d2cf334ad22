"""Fake Slack Web API and Discord API on loopback, speaking their documented shapes.

Slack (`api_base_url` = `<root>/api`): `POST /api/chat.postMessage` with a JSON body and
`Authorization: Bearer <bot token>`. Slack answers HTTP 200 even for errors, with
`{"ok": false, "error": "invalid_auth" | "not_authed" | "channel_not_found" | "no_text" | ...}`; a
success is `{"ok": true, "channel", "ts", "message"}`.

Discord (`api_base_url` = `<root>/api/v10`): the interaction webhook, authenticated by the
interaction token in the path and nothing else (no bot token):
`PATCH /webhooks/<application_id>/<token>/messages/@original` edits the deferred response and
`POST /webhooks/<application_id>/<token>` sends a follow-up message; each answers a message object.
An unknown token gets 404 `{"message": "Unknown Webhook", "code": 10015}`; content over 2,000
characters 400 `{"message": "Invalid Form Body", "code": 50035, ...}`.
"""

from __future__ import annotations

import itertools
import json
import re

from .http import FakeServer, Recorded, Reply

_ts = itertools.count(1)


class FakeSlack(FakeServer):
    def __init__(self, token: str):
        super().__init__(self._answer)
        self.token = token

    @property
    def api_base_url(self) -> str:
        return self.root + "/api"

    def posted(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/api/chat.postMessage"]

    def _answer(self, request: Recorded) -> Reply:
        if request.path != "/api/chat.postMessage":
            return Reply(404, {"ok": False, "error": "unknown_method"})
        auth = request.headers.get("authorization", "")
        if not auth:
            return Reply(200, {"ok": False, "error": "not_authed"})
        if auth != f"Bearer {self.token}":
            return Reply(200, {"ok": False, "error": "invalid_auth"})
        try:
            body = json.loads(request.body)
        except ValueError:
            return Reply(200, {"ok": False, "error": "invalid_json"})
        if not body.get("channel"):
            return Reply(200, {"ok": False, "error": "channel_not_found"})
        if not body.get("text"):
            return Reply(200, {"ok": False, "error": "no_text"})
        ts = f"1712350000.{next(_ts):06d}"
        message = {"type": "message", "user": "U0BOT", "text": body["text"], "ts": ts, "bot_id": "B0BOT"}
        if body.get("thread_ts"):
            message["thread_ts"] = body["thread_ts"]
        return Reply(200, {"ok": True, "channel": body["channel"], "ts": ts, "message": message})


WEBHOOK = re.compile(r"^/api/v10/webhooks/(?P<app>[^/]+)/(?P<token>[^/]+)(?P<original>/messages/@original)?$")


class FakeDiscord(FakeServer):
    def __init__(self):
        super().__init__(self._answer)
        # Interaction tokens Discord issued, by application id: only these have a webhook.
        self.tokens: set[tuple[str, str]] = set()
        self._ids = itertools.count(1_300_000_000_000_000_000)

    @property
    def api_base_url(self) -> str:
        return self.root + "/api/v10"

    def issue(self, application_id: str, token: str) -> None:
        self.tokens.add((application_id, token))

    def edits(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "PATCH" and r.path.endswith("/messages/@original")]

    def followups(self) -> list[Recorded]:
        return [r for r in self.requests if r.method == "POST" and WEBHOOK.match(r.path)]

    def _answer(self, request: Recorded) -> Reply:
        match = WEBHOOK.match(request.path)
        if not match or (request.method, bool(match["original"])) not in (("PATCH", True), ("POST", False)):
            return Reply(404, {"message": "404: Not Found", "code": 0})
        if (match["app"], match["token"]) not in self.tokens:
            return Reply(404, {"message": "Unknown Webhook", "code": 10015})
        try:
            body = json.loads(request.body)
        except ValueError:
            return Reply(400, {"message": "The request body contains invalid JSON.", "code": 50109})
        content = body.get("content", "")
        if len(content) > 2000:
            errors = {"content": {"_errors": [{"code": "BASE_TYPE_MAX_LENGTH",
                                               "message": "Must be 2000 or fewer in length."}]}}
            return Reply(400, {"message": "Invalid Form Body", "code": 50035, "errors": errors})
        message = {"id": str(next(self._ids)), "type": 20, "content": content, "webhook_id": match["app"]}
        return Reply(200, message)
