"""`POST /hooks/<channel>/` up to the hand-over to `webhooks.inbound`: size, authenticity, JSON, adapter, dedupe."""

import json
import time

import pytest
from django.db.models.signals import post_init
from django.test import AsyncClient

from tests.webhooks_fixtures import adapter_plugin
from webhooks import inbound
from webhooks.models import ChannelEndpoint, InboundEvent
from webhooks.signatures import signed_headers

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

SECRET = "tg-webhook-secret_1"
GENERIC_SECRET = "generic-secret"


def update(update_id=815000001, text="hello", chat_id=777001, **extra):
    message = {
        "message_id": 42,
        "from": {"id": chat_id, "is_bot": False, "first_name": "Ada"},
        "chat": {"id": chat_id, "first_name": "Ada", "type": "private"},
        "date": 1764072000,
        "text": text,
    }
    return {"update_id": update_id, "message": message, **extra}


@pytest.fixture
def endpoints(transactional_db, monkeypatch):
    monkeypatch.setenv("TG_WEBHOOK_SECRET", SECRET)
    monkeypatch.setenv("GENERIC_WEBHOOK_SECRET", GENERIC_SECRET)
    tg = ChannelEndpoint.objects.create(
        name="telegram",
        adapter=adapter_plugin("telegram"),
        auth=ChannelEndpoint.Auth.TELEGRAM,
        secret_env="TG_WEBHOOK_SECRET",
        account="exoclaw_bot",
        max_body_bytes=4096,
        sender_policy="open",
    )
    generic = ChannelEndpoint.objects.create(
        name="acme", adapter=adapter_plugin("generic"), secret_env="GENERIC_WEBHOOK_SECRET", sender_policy="open"
    )
    trap = ChannelEndpoint.objects.create(
        name="trappy", adapter=adapter_plugin("trap_adapter"), secret_env="GENERIC_WEBHOOK_SECRET", sender_policy="open"
    )
    return tg, generic, trap


async def post_telegram(body, secret=SECRET, channel="telegram"):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    response = await AsyncClient().post(f"/hooks/{channel}/", raw, content_type="application/json", headers=headers)
    await inbound.idle()
    return response


async def post_signed(channel, body, secret=GENERIC_SECRET):
    raw = json.dumps(body).encode()
    headers = signed_headers(secret, raw, int(time.time()))
    response = await AsyncClient().post(f"/hooks/{channel}/", raw, content_type="application/json", headers=headers)
    await inbound.idle()
    return response


async def events():
    return [e async for e in InboundEvent.objects.order_by("pk")]


async def test_a_text_message_with_the_right_secret_is_accepted_and_recorded(endpoints):
    response = await post_telegram(update())
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True
    [event] = await events()
    assert (event.update_id, event.account, event.peer, event.message_id) == ("815000001", "exoclaw_bot", "777001", "42")


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x", SECRET.upper()])
async def test_a_missing_or_wrong_secret_gets_401_and_nothing_is_stored(endpoints, secret):
    response = await post_telegram(update(), secret=secret)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert await events() == []


async def test_an_unset_secret_variable_refuses_everything(endpoints, monkeypatch):
    monkeypatch.delenv("TG_WEBHOOK_SECRET")
    assert (await post_telegram(update(), secret="")).status_code == 401
    assert await events() == []


async def test_generic_hmac_signature_is_checked_over_the_raw_body(endpoints):
    body = {"id": "evt-1", "account": "acme", "peer": "u-1", "text": "hi"}
    assert (await post_signed("acme", body, secret="not-the-secret")).status_code == 401
    assert await events() == []
    response = await post_signed("acme", body)
    assert response.status_code == 200, response.content
    [event] = await events()
    assert (event.update_id, event.account, event.peer) == ("evt-1", "acme", "u-1")


async def test_the_same_update_id_twice_is_recorded_once(endpoints):
    first = await post_telegram(update(update_id=5))
    second = await post_telegram(update(update_id=5, text="a retry carries the same id"))
    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json() == {"ok": True, "duplicate": True}
    assert [e.update_id for e in await events()] == ["5"]


async def test_a_non_message_update_is_skipped_and_not_recorded(endpoints):
    response = await post_telegram({"update_id": 6, "edited_message": update()["message"]})
    assert response.status_code == 200
    assert response.json() == {"ok": True, "skipped": "not a message update"}
    assert await events() == []


@pytest.mark.parametrize("body", [b"{not json", b"", b"[]", b'{"message": {"text": "no update_id"}}'])
async def test_a_malformed_body_gets_400_and_nothing_is_stored(endpoints, body):
    response = await post_telegram(body)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed"
    assert await events() == []


async def test_a_body_over_the_limit_gets_413_before_anything_else(endpoints):
    big = update(text="x" * 5000)
    response = await post_telegram(big)
    assert response.status_code == 413
    assert "4096 bytes" in response.json()["message"]
    assert await events() == []


async def test_unknown_or_disabled_channels_get_404(endpoints):
    tg, _, _ = endpoints
    assert (await post_telegram(update(), channel="nope")).status_code == 404
    tg.enabled = False
    await tg.asave()
    assert (await post_telegram(update())).status_code == 404
    assert await events() == []


async def test_only_post_is_allowed(endpoints):
    assert (await AsyncClient().get("/hooks/telegram/")).status_code == 405


async def test_an_adapter_that_traps_gets_a_clear_error_and_the_server_keeps_serving(endpoints):
    response = await post_signed("trappy", {"id": "t1", "peer": "p", "text": "trap"})
    assert response.status_code == 500
    assert response.json()["error"] == "adapter_failed"
    assert "trap_adapter.parse_incoming: trap: wasm trap: wasm `unreachable` instruction executed" in response.json()["message"]
    [failed] = await events()
    assert failed.status == InboundEvent.Status.FAILED and "wasm trap" in failed.error

    assert (await post_telegram(update(update_id=7))).status_code == 200
    assert (await post_signed("trappy", {"id": "t2", "peer": "p", "text": "fine"})).status_code == 200


async def test_endpoints_are_cached_until_a_save_here_or_the_ttl_for_changes_made_elsewhere(endpoints, monkeypatch):
    from webhooks import endpoints as cache
    from webhooks.endpoints import TTL, get_endpoint

    now = [1000.0]
    monkeypatch.setattr(cache._cache, "clock", lambda: now[0])
    first = await get_endpoint("telegram")
    # A change no signal sees, as when another process makes it: the cached row stays for up to TTL.
    await ChannelEndpoint.objects.filter(name="telegram").aupdate(enabled=False)
    assert await get_endpoint("telegram") is first
    now[0] += TTL
    assert await get_endpoint("telegram") is None
    # A save in this process takes effect at once.
    tg = await ChannelEndpoint.objects.aget(name="telegram")
    tg.enabled = True
    await tg.asave()
    assert (await get_endpoint("telegram")).enabled
    tg.account = "renamed_bot"
    await tg.asave()
    assert (await get_endpoint("telegram")).account == "renamed_bot"


async def test_an_endpoint_comes_with_its_adapters_http_secrets_and_a_changed_secret_clears_the_cache(endpoints):
    from sandbox.manifest import effective_grant
    from sandbox.models import CapabilityGrant, HttpSecret
    from webhooks.endpoints import get_endpoint

    tg = await ChannelEndpoint.objects.select_related("adapter").aget(name="telegram")
    grant = await CapabilityGrant.objects.acreate(plugin=tg.adapter, allowed_hosts=["https://api.telegram.org"])
    secret = await HttpSecret.objects.acreate(grant=grant, host="https://api.telegram.org", query="token",
                                              secret_env="TG_BOT_TOKEN")
    # Read on the event loop, as webhooks.adapter reads it: a query here would raise SynchronousOnlyOperation.
    adapter = (await get_endpoint("telegram")).adapter
    assert effective_grant(adapter.grants.all(), None).http_secrets == (
        {"host": "https://api.telegram.org", "query": "token", "secret_env": "TG_BOT_TOKEN"},)
    secret.query = "key"
    await secret.asave()
    adapter = (await get_endpoint("telegram")).adapter
    assert effective_grant(adapter.grants.all(), None).http_secrets[0]["query"] == "key"


async def test_a_read_that_overlaps_a_save_does_not_cache_the_row_the_save_replaced(endpoints):
    from webhooks.endpoints import clear_cache, get_endpoint

    def save_while_the_row_is_read(instance, **_kwargs):
        # The row is fetched; now a save elsewhere in this process changes it and clears the cache.
        post_init.disconnect(save_while_the_row_is_read, sender=ChannelEndpoint)
        ChannelEndpoint.objects.filter(pk=instance.pk).update(account="renamed_bot")
        clear_cache()

    post_init.connect(save_while_the_row_is_read, sender=ChannelEndpoint)
    try:
        assert (await get_endpoint("telegram")).account == "exoclaw_bot"
    finally:
        post_init.disconnect(save_while_the_row_is_read, sender=ChannelEndpoint)
    assert (await get_endpoint("telegram")).account == "renamed_bot", "the read cached the row the save replaced"


async def test_a_disabled_adapter_plugin_closes_its_channels(endpoints):
    tg, _, _ = endpoints
    plugin = tg.adapter
    plugin.enabled = False
    await plugin.asave()
    assert (await post_telegram(update())).status_code == 404

