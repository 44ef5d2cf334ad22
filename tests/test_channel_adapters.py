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


@pytest.fixture
def slack(transactional_db):
    return adapter_plugin("slack")


@pytest.fixture
def discord(transactional_db):
    return adapter_plugin("discord")


async def test_slack_and_discord_describe_their_auth_schemes(slack, discord):
    assert (await adapter.call(slack, "describe", b""))["auth"] == "slack_signature"
    assert (await adapter.call(discord, "describe", b""))["auth"] == "discord_ed25519"


async def test_slack_url_verification_asks_the_host_to_answer_the_challenge(slack):
    out = await call(slack, "parse_incoming", {"token": "t", "challenge": "c-123", "type": "url_verification"})
    assert out == {"skip": True, "reason": "url_verification", "respond": {"challenge": "c-123"}}


async def test_slack_app_mention_names_team_app_channel_and_thread_and_drops_the_bots_mention(slack):
    from tests.webhooks_fixtures import slack_mention

    out = await call(slack, "parse_incoming", slack_mention("  what now? ", ts="1712345678.000100",
                                                            thread_ts="1712345600.000001"))
    assert out == {
        "content": "what now?",
        "account": "A0APP0001",
        "team": "T0TEAM001",
        "peer": "C0GENERAL:1712345600.000001",
        "sender": "U0ADA0001",
        "message_id": "1712345678.000100",
        "update_id": "Ev0SLACK0001",
    }


async def test_slack_reply_posts_into_the_thread_with_a_bearer_token_and_splits_at_4000_characters(slack):
    out = await call(slack, "format_outgoing", {"content": "hi", "peer": "C1:1712345678.000100", "account": "A1"})
    assert out == {"method": "POST", "path": "/chat.postMessage", "auth": "bearer",
                   "json": {"channel": "C1", "text": "hi", "thread_ts": "1712345678.000100"}}
    long = await call(slack, "format_outgoing", {"content": "x" * 4000 + "y" * 5, "peer": "D1:1.2"})
    assert [r["json"]["text"] for r in long] == ["x" * 4000, "y" * 5]
    assert {r["json"]["thread_ts"] for r in long} == {"1.2"}


async def test_discord_ping_asks_for_pong_and_a_command_for_a_deferred_answer(discord):
    from tests.webhooks_fixtures import discord_ask, discord_ping

    assert await call(discord, "parse_incoming", discord_ping()) == {
        "skip": True, "reason": "ping", "update_id": "1300000000000000001", "respond": {"type": 1}
    }
    out = await call(discord, "parse_incoming", discord_ask("hello", guild=None))
    assert out["respond"] == {"type": 5}
    assert (out["content"], out["account"], out["peer"], out["sender"]) == (
        "hello", "1100000000000000001", "1500000000000000001", "1400000000000000001"
    )
    assert "guild" not in out and out["reply_ref"] == discord_ask("x")["token"]


async def test_discord_takes_the_first_string_option_also_inside_a_subcommand(discord):
    from tests.webhooks_fixtures import discord_ask

    body = discord_ask("unused")
    body["data"]["options"] = [{"name": "ask", "type": 1, "options": [
        {"name": "private", "type": 5, "value": True}, {"name": "text", "type": 3, "value": "nested"}]}]
    assert (await call(discord, "parse_incoming", body))["content"] == "nested"


@pytest.mark.parametrize("kind", [3, 4, 5])
async def test_discord_components_autocomplete_and_modals_are_skipped(discord, kind):
    out = await call(discord, "parse_incoming", {"id": "9", "type": kind, "application_id": "1", "token": "t"})
    assert out == {"skip": True, "reason": "not an application command", "update_id": "9"}


async def test_discord_reply_edits_original_then_follows_up_and_needs_the_token(discord):
    out = await call(discord, "format_outgoing", {"content": "a" * 2001, "account": "app1", "reply_ref": "tok"})
    assert [(r["method"], r["path"], len(r["json"]["content"])) for r in out] == [
        ("PATCH", "/webhooks/app1/tok/messages/@original", 2000), ("POST", "/webhooks/app1/tok", 1)
    ]
    with pytest.raises(adapter.AdapterFailed, match="needs the interaction token"):
        await call(discord, "format_outgoing", {"content": "hi", "account": "app1"})


@pytest.mark.parametrize("body", [b"[]", b"not json", b"", b'{"no": "type"}'])
async def test_slack_and_discord_refuse_what_is_not_their_request_with_a_plugin_error(slack, discord, body):
    for plugin in (slack, discord):
        with pytest.raises(adapter.AdapterFailed) as e:
            await adapter.call(plugin, "parse_incoming", body)
        assert e.value.kind == "plugin_error", plugin.name
