"""The channel-adapter plugins, run as real .wasm through Extism, and the committed builds."""

import json

import pytest

from tests.webhooks_fixtures import adapter_plugin
from webhooks import adapter

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

UPDATE = {
    "update_id": 815000001,
    "message": {
        "message_id": 42,
        "from": {"id": 777001, "is_bot": False, "first_name": "Ada", "language_code": "en"},
        "chat": {"id": 777001, "first_name": "Ada", "type": "private"},
        "date": 1764072000,
        "text": "héllo 👋",
    },
}


async def call(plugin, fn, payload):
    return await adapter.call(plugin, fn, json.dumps(payload).encode())


@pytest.fixture
def telegram(transactional_db):
    return adapter_plugin("telegram")


@pytest.fixture
def generic(transactional_db):
    return adapter_plugin("generic")


@pytest.fixture
def trap_adapter(transactional_db):
    return adapter_plugin("trap_adapter")


async def test_telegram_describes_itself_as_a_channel_adapter(telegram):
    out = await adapter.call(telegram, "describe", b"")
    assert out["type"] == "channel_adapter" and out["name"] == "telegram"
    assert out["auth"] == "telegram_secret_token"


async def test_telegram_text_message_becomes_a_normalized_message(telegram):
    out = await call(telegram, "parse_incoming", UPDATE)
    assert out == {
        "content": "héllo 👋",
        "account": "",
        "peer": "777001",
        "sender": "777001",
        "message_id": 42,
        "update_id": 815000001,
    }


async def test_telegram_group_message_is_answered_in_the_group(telegram):
    update = {**UPDATE, "message": {**UPDATE["message"], "chat": {"id": -1001234567890, "type": "supergroup"}}}
    out = await call(telegram, "parse_incoming", update)
    assert (out["peer"], out["sender"]) == ("-1001234567890", "777001")


@pytest.mark.parametrize(
    "update, reason",
    [
        ({"update_id": 1, "edited_message": UPDATE["message"]}, "not a message update"),
        ({"update_id": 2, "callback_query": {"id": "1", "from": {"id": 1, "is_bot": False}}}, "not a message update"),
        ({"update_id": 3, "message": {**UPDATE["message"], "text": None, "photo": []}}, "message without text"),
        ({"update_id": 4, "message": {**UPDATE["message"], "from": {"id": 9, "is_bot": True}}}, "message from a bot"),
    ],
)
async def test_telegram_updates_other_than_text_messages_are_skipped(telegram, update, reason):
    assert await call(telegram, "parse_incoming", update) == {"skip": True, "reason": reason, "update_id": update["update_id"]}


@pytest.mark.parametrize("body", [b"[]", b'{"message": {}}', b'{"update_id": true}', b"not json", b""])
async def test_telegram_refuses_what_is_not_an_update_with_a_plugin_error(telegram, body):
    with pytest.raises(adapter.AdapterFailed, match="not a Telegram Update") as e:
        await adapter.call(telegram, "parse_incoming", body)
    assert e.value.kind == "plugin_error"


async def test_telegram_reply_is_a_send_message_with_a_token_placeholder_and_reply_parameters(telegram):
    out = await call(telegram, "format_outgoing", {"content": "hi", "account": "", "peer": "777001", "reply_to": "42"})
    assert out == {
        "method": "POST",
        "path": "/bot{token}/sendMessage",
        "json": {"chat_id": 777001, "text": "hi", "reply_parameters": {"message_id": 42, "allow_sending_without_reply": True}},
    }


async def test_telegram_reply_to_a_channel_username_keeps_the_chat_id_a_string(telegram):
    out = await call(telegram, "format_outgoing", {"content": "hi", "peer": "@exoclaw_news"})
    assert out["json"] == {"chat_id": "@exoclaw_news", "text": "hi"}


async def test_telegram_long_reply_is_split_at_4096_utf16_units_and_only_the_first_part_replies(telegram):
    text = "a" * 4095 + "👋" + "b" * 10  # the emoji is two UTF-16 units, so it starts the second message
    out = await call(telegram, "format_outgoing", {"content": text, "peer": "5", "reply_to": 9})
    assert [m["json"]["text"] for m in out] == ["a" * 4095, "👋" + "b" * 10]
    assert "reply_parameters" in out[0]["json"] and "reply_parameters" not in out[1]["json"]


async def test_generic_message_in_and_signed_post_out(generic):
    event = {"id": "evt-1", "account": "acme", "peer": "u-42", "text": "hello", "team": "t1", "message_id": "m-9"}
    assert await call(generic, "parse_incoming", event) == {
        "content": "hello",
        "account": "acme",
        "peer": "u-42",
        "sender": "u-42",  # who wrote it defaults to the peer
        "team": "t1",
        "message_id": "m-9",
        "update_id": "evt-1",
    }
    out = await call(generic, "format_outgoing", {"content": "hi", "account": "acme", "peer": "u-42", "reply_to": "m-9"})
    assert out == {
        "method": "POST",
        "path": "",
        "sign": True,
        "json": {"account": "acme", "peer": "u-42", "text": "hi", "in_reply_to": "m-9"},
    }


async def test_generic_events_that_are_not_messages_are_skipped(generic):
    out = await call(generic, "parse_incoming", {"id": "evt-2", "type": "typing", "peer": "u-42"})
    assert out == {"skip": True, "reason": "not a message event", "update_id": "evt-2"}


async def test_generic_refuses_a_message_without_peer_or_with_a_number_for_a_string(generic):
    for event in ({"id": "e", "text": "hi"}, {"id": "e", "peer": 5, "text": "hi"}):
        with pytest.raises(adapter.AdapterFailed, match="not a generic message") as e:
            await call(generic, "parse_incoming", event)
        assert e.value.kind == "plugin_error"


async def test_a_trapping_adapter_fails_with_kind_trap_and_the_next_call_works(trap_adapter):
    plugin = trap_adapter
    with pytest.raises(adapter.AdapterFailed, match="unreachable") as e:
        await call(plugin, "parse_incoming", {"peer": "p", "text": "trap"})
    assert e.value.kind == "trap"
    assert (await call(plugin, "parse_incoming", {"peer": "p", "text": "fine"})) == {"content": "hi", "peer": "p1"}
