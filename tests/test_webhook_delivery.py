"""Replies through the adapter's format_outgoing and httpx to a fake Telegram Bot API on loopback."""

import logging

import pytest

from tests.webhooks_fixtures import BOT_TOKEN, adapter_plugin
from webhooks.delivery import RetryPolicy
from webhooks.inbound import deliver_reply
from webhooks.models import ChannelEndpoint, InboundEvent
from webhooks.signatures import REPLY_SIGNATURE_HEADER, REPLY_TIMESTAMP_HEADER, sign_reply

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

def with_adapter(events):
    """Events loaded as the ingress hands them over: endpoint, adapter and its grants with their HTTP secrets."""
    return events.select_related("endpoint__adapter").prefetch_related("endpoint__adapter__grants__http_secrets")


FAST = RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.05)


@pytest.fixture
def telegram_event(transactional_db, fake_telegram, monkeypatch):
    monkeypatch.setenv("TG_BOT_TOKEN", BOT_TOKEN)
    endpoint = ChannelEndpoint.objects.create(
        name="telegram",
        adapter=adapter_plugin("telegram"),
        auth=ChannelEndpoint.Auth.TELEGRAM,
        secret_env="TG_WEBHOOK_SECRET",
        api_base_url=fake_telegram.url,
        token_env="TG_BOT_TOKEN",
    )
    return with_adapter(InboundEvent.objects).get(
        pk=InboundEvent.objects.create(endpoint=endpoint, update_id="1", peer="777001", message_id="42").pk
    )


async def test_the_reply_goes_to_send_message_for_the_right_chat_as_a_reply(telegram_event, fake_telegram):
    await deliver_reply(telegram_event, "hello back", FAST)
    [sent] = fake_telegram.requests()
    assert sent.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert sent.json == {
        "chat_id": 777001,
        "text": "hello back",
        "reply_parameters": {"message_id": 42, "allow_sending_without_reply": True},
    }
    assert "X-Exoclaw-Signature" not in sent.headers
    await telegram_event.arefresh_from_db()
    assert (telegram_event.status, telegram_event.delivery_attempts, telegram_event.error) == ("replied", 1, "")


async def test_a_429_with_retry_after_is_waited_out_and_the_reply_is_delivered_once(telegram_event, fake_telegram):
    fake_telegram.fail_next(429, "Too Many Requests: retry after 1", retry_after=1)
    await deliver_reply(telegram_event, "patience", FAST)
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["patience", "patience"]
    await telegram_event.arefresh_from_db()
    assert (telegram_event.status, telegram_event.delivery_attempts) == ("replied", 2)


async def test_a_bad_request_is_not_retried_and_is_recorded_as_undelivered(telegram_event, fake_telegram):
    fake_telegram.fail_next(400, "Bad Request: chat not found")
    await deliver_reply(telegram_event, "hello?", FAST)
    assert len(fake_telegram.requests()) == 1
    await telegram_event.arefresh_from_db()
    assert telegram_event.status == "undelivered"
    assert telegram_event.error == (
        "the reply could not be delivered: gave up after 1 attempt: HTTP 400: Bad Request: chat not found"
    )


async def test_server_errors_are_retried_up_to_the_policy_then_recorded(telegram_event, fake_telegram):
    for _ in range(3):
        fake_telegram.fail_next(502, "Bad Gateway")
    await deliver_reply(telegram_event, "anyone?", FAST)
    assert len(fake_telegram.requests()) == 3
    await telegram_event.arefresh_from_db()
    assert telegram_event.status == "undelivered"
    assert "gave up after 3 attempts: HTTP 502: Bad Gateway" in telegram_event.error


async def test_a_missing_bot_token_is_a_clear_error_and_nothing_is_sent(telegram_event, fake_telegram, monkeypatch):
    monkeypatch.delenv("TG_BOT_TOKEN")
    await deliver_reply(telegram_event, "hi", FAST)
    assert fake_telegram.requests() == []
    await telegram_event.arefresh_from_db()
    assert telegram_event.status == "undelivered"
    assert "needs {token} but the channel has no token configured" in telegram_event.error


async def test_an_unreachable_api_is_retried_and_the_error_never_shows_the_token(telegram_event, caplog):
    endpoint = telegram_event.endpoint
    endpoint.api_base_url = "http://127.0.0.1:9"  # discard port: nothing listens
    await endpoint.asave()
    with caplog.at_level(logging.DEBUG):
        await deliver_reply(telegram_event, "hi", FAST)
    await telegram_event.arefresh_from_db()
    assert telegram_event.status == "undelivered"
    assert "gave up after 3 attempts: no answer (ConnectError)" in telegram_event.error
    assert BOT_TOKEN not in telegram_event.error
    assert BOT_TOKEN not in caplog.text


async def test_a_trapping_format_outgoing_is_recorded_as_undelivered(transactional_db, fake_telegram):
    from asgiref.sync import sync_to_async

    plugin = await sync_to_async(adapter_plugin)("trap_adapter")
    endpoint = await ChannelEndpoint.objects.acreate(
        name="trappy", adapter=plugin, secret_env="S", api_base_url=fake_telegram.url
    )
    event = await InboundEvent.objects.acreate(endpoint=endpoint, peer="p")
    event = await with_adapter(InboundEvent.objects).aget(pk=event.pk)
    await deliver_reply(event, "hi", FAST)
    assert fake_telegram.requests() == []
    await event.arefresh_from_db()
    assert event.status == "undelivered"
    assert event.error == (
        "the reply could not be formatted: trap_adapter.format_outgoing: trap: wasm trap: wasm `unreachable` instruction executed"
    )


async def test_generic_replies_are_signed_with_the_channel_secret(transactional_db, fake_telegram, monkeypatch):
    from asgiref.sync import sync_to_async

    monkeypatch.setenv("ACME_SECRET", "acme-secret")
    plugin = await sync_to_async(adapter_plugin)("generic")
    endpoint = await ChannelEndpoint.objects.acreate(
        name="acme", adapter=plugin, secret_env="ACME_SECRET", api_base_url=fake_telegram.url + "/replies"
    )
    event = await InboundEvent.objects.acreate(endpoint=endpoint, account="acme", peer="u-1", message_id="m-1")
    event = await with_adapter(InboundEvent.objects).aget(pk=event.pk)
    await deliver_reply(event, "signed reply", FAST)
    [sent] = fake_telegram.requests()
    assert sent.path == "/replies"
    assert sent.json == {"account": "acme", "peer": "u-1", "text": "signed reply", "in_reply_to": "m-1"}
    timestamp = int(sent.headers[REPLY_TIMESTAMP_HEADER])
    assert sent.headers[REPLY_SIGNATURE_HEADER] == sign_reply("acme-secret", timestamp, sent.raw)[REPLY_SIGNATURE_HEADER]
    assert "X-Exoclaw-Signature" not in sent.headers, "a reply must not look like a request exoclaw accepts"

