"""Slack end to end: Events API requests signed as Slack signs them (by slack_sdk), through the real
ASGI app, the slack.wasm adapter, the run service and the echo agent, to a fake Slack Web API on
loopback."""

import json
import time

import pytest
from django.test import AsyncClient

from agents.models import Agent
from agents.store import get_store
from routing.models import Binding
from tests.webhooks_fixtures import (
    SLACK_APP,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    SLACK_TEAM,
    adapter_plugin,
    slack_dm,
    slack_event_callback,
    slack_headers,
    slack_mention,
)
from webhooks import inbound
from webhooks.models import ChannelEndpoint, InboundEvent

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_layer", "process_store"),
]


@pytest.fixture
def slack(fake_slack, monkeypatch, transactional_db):
    monkeypatch.setenv("SLACK_SIGNING_SECRET", SLACK_SIGNING_SECRET)
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_BOT_TOKEN)
    agent = Agent.objects.create(name="helper", provider="echo")
    Binding.objects.create(agent=agent, channel="slack")
    return ChannelEndpoint.objects.create(
        name="slack",
        adapter=adapter_plugin("slack"),
        auth=ChannelEndpoint.Auth.SLACK,
        secret_env="SLACK_SIGNING_SECRET",
        api_base_url=fake_slack.api_base_url,
        token_env="SLACK_BOT_TOKEN",
        sender_policy="open",
    )


async def post(body: dict, headers: dict | None = None, raw: bytes | None = None):
    raw = raw if raw is not None else json.dumps(body).encode()
    response = await AsyncClient().post(
        "/hooks/slack/", raw, content_type="application/json", headers=headers or slack_headers(raw)
    )
    await inbound.idle()
    return response


async def test_a_signed_url_verification_gets_its_challenge_back_and_stores_nothing(slack, fake_slack):
    body = {"token": "Jhj5dZrVaK7ZwHHjRyZWjbDl", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
            "type": "url_verification"}
    response = await post(body)
    assert response.status_code == 200
    assert response.json() == {"challenge": body["challenge"]}
    assert await InboundEvent.objects.acount() == 0
    assert fake_slack.requests == []


async def test_an_app_mention_is_answered_once_in_its_channel_and_thread_with_the_bot_token(slack, fake_slack):
    response = await post(slack_mention("what is up?", ts="1712345678.000100"))
    assert response.status_code == 200, response.content
    [sent] = fake_slack.posted()
    assert sent.headers["authorization"] == f"Bearer {SLACK_BOT_TOKEN}"
    assert sent.headers["content-type"].startswith("application/json")
    # A message that started no thread is answered in a thread under it.
    assert sent.json == {"channel": "C0GENERAL", "text": "what is up?", "thread_ts": "1712345678.000100"}
    event = await InboundEvent.objects.aget()
    assert (event.status, event.team, event.account, event.peer, event.sender) == (
        "replied", SLACK_TEAM, SLACK_APP, "C0GENERAL:1712345678.000100", "U0ADA0001"
    )
    assert event.session_key == f"agent:helper:slack:{SLACK_APP}:C0GENERAL%3A1712345678.000100"


async def test_each_thread_is_its_own_conversation_and_replies_go_into_it(slack, fake_slack):
    await post(slack_mention("first", ts="1712345678.000100", event_id="Ev01"))
    await post(slack_mention("in the thread", ts="1712345690.000300", thread_ts="1712345678.000100", event_id="Ev02"))
    await post(slack_mention("another thread", ts="1712345700.000400", event_id="Ev03"))
    assert [(r.json["text"], r.json["thread_ts"]) for r in fake_slack.posted()] == [
        ("first", "1712345678.000100"),
        ("in the thread", "1712345678.000100"),
        ("another thread", "1712345700.000400"),
    ]
    keys = [e.session_key async for e in InboundEvent.objects.order_by("pk")]
    assert keys[0] == keys[1] != keys[2]


async def test_a_slack_retry_with_the_same_event_id_makes_no_second_run(slack, fake_slack):
    body = slack_mention("only once", event_id="Ev0RETRY01")
    assert (await post(body)).json()["ok"] is True
    # Slack retries with the same event, a fresh timestamp and signature, and X-Slack-Retry-Num.
    raw = json.dumps(body).encode()
    retry = await post(body, slack_headers(raw, int(time.time()) + 1, **{"X-Slack-Retry-Num": "1",
                                                                         "X-Slack-Retry-Reason": "http_timeout"}))
    assert retry.status_code == 200 and retry.json() == {"ok": True, "duplicate": True}
    assert [r.json["text"] for r in fake_slack.posted()] == ["only once"]
    event = await InboundEvent.objects.aget()
    assert len(await get_store().runs((await get_store().current_session(event.session_key))["id"])) == 1


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda raw: slack_headers(raw, secret="not-the-signing-secret"), id="wrong-secret"),
        pytest.param(lambda raw: slack_headers(raw, int(time.time()) - 301), id="stale"),
        pytest.param(lambda raw: {"X-Slack-Request-Timestamp": str(int(time.time()))}, id="unsigned"),
        pytest.param(lambda raw: slack_headers(raw + b" "), id="other-body"),
    ],
)
async def test_a_bad_or_stale_signature_gets_401_and_nothing_runs(slack, fake_slack, make_headers):
    raw = json.dumps(slack_mention("let me in")).encode()
    response = await post({}, make_headers(raw), raw=raw)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert await InboundEvent.objects.acount() == 0
    assert fake_slack.requests == []
    assert (await get_store().list_sessions(channel="slack"))["total"] == 0


@pytest.mark.parametrize(
    "body, reason",
    [
        (slack_dm("beep", bot_id="B0OTHER01", subtype="bot_message"), "not a plain user message (it has a subtype)"),
        (slack_dm("beep", bot_id="B0OTHER01"), "message from a bot"),
        (slack_dm("edited", subtype="message_changed"), "not a plain user message (it has a subtype)"),
        (slack_dm("<@U0ADA0001> has joined the channel", subtype="channel_join"),
         "not a plain user message (it has a subtype)"),
        (slack_event_callback({"type": "reaction_added", "user": "U0ADA0001", "reaction": "thumbsup"}),
         "not a message event"),
        # A channel message that mentions the app also comes as an app_mention: that one is answered.
        (slack_event_callback({"type": "message", "channel_type": "channel", "user": "U0ADA0001",
                               "text": "<@U0BOT0001> hi", "ts": "1.2", "channel": "C0GENERAL"}),
         "mentions the app: answered through its app_mention event"),
    ],
)
async def test_bot_messages_edits_joins_and_other_events_are_skipped(slack, fake_slack, body, reason):
    response = await post(body)
    assert response.json() == {"ok": True, "skipped": reason}
    assert await InboundEvent.objects.acount() == 0
    assert fake_slack.requests == []


async def test_a_direct_message_is_answered_in_the_dm(slack, fake_slack):
    await post(slack_dm("hello in private"))
    [sent] = fake_slack.posted()
    assert sent.json == {"channel": "D0DIRECT1", "text": "hello in private", "thread_ts": "1712345679.000200"}


async def test_a_binding_on_the_team_wins_for_that_workspaces_messages(slack, fake_slack):
    workspace_agent = await Agent.objects.acreate(name="workspace", provider="echo")
    await Binding.objects.acreate(agent=workspace_agent, team=SLACK_TEAM)
    await post(slack_mention("whose workspace?", event_id="Ev0TEAM01"))
    await post(slack_mention("another workspace", event_id="Ev0TEAM02", team="T0OTHER01"))
    agents = [e.agent async for e in InboundEvent.objects.order_by("pk")]
    assert agents == ["workspace", "helper"]
    assert len(fake_slack.posted()) == 2


async def test_a_slack_api_error_is_recorded_without_the_token(slack, fake_slack, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-revoked-token")
    await post(slack_mention("are you there"))
    event = await InboundEvent.objects.aget()
    assert event.status == "undelivered"
    assert event.error == "the reply could not be delivered: gave up after 1 attempt: HTTP 200: invalid_auth"
    assert "xoxb-revoked-token" not in event.error
