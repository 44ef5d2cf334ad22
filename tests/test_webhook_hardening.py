"""Webhook hardening: replays and reflected replies refused, bounded JSON, malformed input is a 400
(never a 500), whitespace-only texts skipped. (Body size: tests/test_bodylimit.py.)"""

import json
import time

import pytest
from django.test import AsyncClient

from agents.models import Agent
from agents.store import get_store
from routing.models import Binding
from tests.webhooks_fixtures import BOT_TOKEN, adapter_plugin
from webhooks import inbound
from webhooks.models import ChannelEndpoint, InboundEvent
from webhooks.signatures import signed_headers

SECRET = "acme-hardening-secret"
TG_SECRET = "hardening-tg-secret"

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_layer", "process_store"),
]


@pytest.fixture
def acme(fake_telegram, monkeypatch, transactional_db):
    """A generic channel whose replies go to the fake's /replies (any non-/bot path answers 200)."""
    monkeypatch.setenv("ACME_SECRET", SECRET)
    monkeypatch.setenv("HARD_TG_SECRET", TG_SECRET)
    monkeypatch.setenv("HARD_TG_TOKEN", BOT_TOKEN)
    Binding.objects.create(agent=Agent.objects.create(name="helper", provider="echo"))
    ChannelEndpoint.objects.create(
        name="telegram", adapter=adapter_plugin("telegram"), auth=ChannelEndpoint.Auth.TELEGRAM,
        secret_env="HARD_TG_SECRET", api_base_url=fake_telegram.url, token_env="HARD_TG_TOKEN", sender_policy="open",
    )
    return ChannelEndpoint.objects.create(
        name="acme", adapter=adapter_plugin("generic"), secret_env="ACME_SECRET",
        api_base_url=fake_telegram.url + "/replies", sender_policy="open",
    )


async def post_raw(raw: bytes, headers: dict, channel: str = "acme"):
    response = await AsyncClient().post(f"/hooks/{channel}/", raw, content_type="application/json", headers=headers)
    await inbound.idle()
    return response


async def post_signed(body, timestamp: int | None = None):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await post_raw(raw, signed_headers(SECRET, raw, int(time.time()) if timestamp is None else timestamp))


async def runs() -> int:
    total = 0
    for session in (await get_store().list_sessions())["items"]:
        total += len(await get_store().runs(session["id"]))
    return total


@pytest.mark.parametrize("with_id", [True, False], ids=["with-id", "without-id"])
async def test_a_replayed_signed_generic_webhook_is_refused(acme, fake_telegram, with_id):
    body = {"peer": "u-1", "text": "pay me once"} | ({"id": "evt-replay"} if with_id else {})
    raw = json.dumps(body).encode()
    headers = signed_headers(SECRET, raw, int(time.time()))
    assert (await post_raw(raw, headers)).status_code == 200
    for _ in range(2):
        again = await post_raw(raw, headers)
        assert again.status_code == 401
        assert again.json()["reason"] == "replayed"
    assert await InboundEvent.objects.acount() == 1
    assert await runs() == 1
    assert len(fake_telegram.requests()) == 1


async def test_a_stale_or_future_generic_timestamp_is_refused(acme):
    for skew in (-301, 301):
        response = await post_signed({"id": f"evt{skew}", "peer": "u", "text": "late"}, int(time.time()) + skew)
        assert (response.status_code, response.json()["reason"]) == (401, "stale")
    assert await InboundEvent.objects.acount() == 0


async def test_a_reply_exoclaw_signed_and_posted_back_is_refused(acme, fake_telegram):
    assert (await post_signed({"id": "evt-1", "peer": "u-1", "text": "echo me", "message_id": "m-1"})).status_code == 200
    [reply] = fake_telegram.requests()
    assert reply.path == "/replies" and reply.json["text"] == "echo me"
    # Posted back as it came, and with its signature moved to the headers exoclaw reads.
    as_sent = {k: v for k, v in reply.headers.items() if k.lower().startswith("x-exoclaw")}
    renamed = {"X-Exoclaw-Timestamp": reply.headers["X-Exoclaw-Reply-Timestamp"],
               "X-Exoclaw-Signature": reply.headers["X-Exoclaw-Reply-Signature"]}
    for headers in (as_sent, renamed):
        response = await post_raw(reply.raw, headers)
        assert response.status_code == 401, headers
    assert await InboundEvent.objects.acount() == 1


@pytest.mark.parametrize("depth", [65, 100_000])
async def test_a_deeply_nested_signed_body_gets_400_not_500(acme, depth):
    raw = b'{"id": "deep", "peer": "u", "text": "t", "x": ' + b"[" * depth + b"]" * depth + b"}"
    response = await post_signed(raw)
    assert response.status_code == 400
    assert response.json() == {"ok": False, "error": "malformed", "message": "The body nests deeper than 64 levels."}
    assert await InboundEvent.objects.acount() == 0


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff\xfe not utf-8", b'{"id": 1' + b"1" * 5000 + b"}", b"NaN", b'"a string"', b"[]", b"{", b"null",
     b'{"peer": "u", "text": 5}', b'{"peer": "u", "text": "\\ud800"}', b'{"peer": "", "text": "hi"}',
     b'{"id": "' + b"x" * 200 + b'", "peer": "u", "text": "hi"}'],
    ids=["empty", "not-utf8", "huge-int", "nan", "string", "array", "truncated", "null", "text-number", "lone-surrogate",
         "empty-peer", "id-too-long"],
)
async def test_any_malformed_signed_body_gets_400(acme, raw):
    response = await post_signed(raw)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "malformed"


@pytest.mark.parametrize("headers", [
    {"X-Exoclaw-Signature": "sha256=00", "X-Exoclaw-Timestamp": "yesterday"},
    {"X-Exoclaw-Signature": "sha256=ünïcode", "X-Exoclaw-Timestamp": "1"},
    {"X-Exoclaw-Signature": "", "X-Exoclaw-Timestamp": ""},
])
async def test_malformed_signature_headers_get_401(acme, headers):
    response = await post_raw(b'{"peer": "u", "text": "t"}', headers)
    assert response.status_code == 401


@pytest.mark.parametrize("text", ["\u00a0", "\u00a0\u00a0\u2003", " \n\t"])
async def test_a_telegram_text_of_only_unicode_spaces_is_skipped_with_200(acme, fake_telegram, text):
    update = {"update_id": 815200001, "message": {"message_id": 5, "date": 1764072000, "text": text,
                                                  "chat": {"id": 42, "type": "private"}, "from": {"id": 42, "is_bot": False}}}
    response = await post_raw(json.dumps(update).encode(), {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET}, "telegram")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "skipped": "message without text"}
    assert await InboundEvent.objects.acount() == 0
    assert fake_telegram.requests() == []
