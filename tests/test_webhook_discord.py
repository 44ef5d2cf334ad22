"""Discord end to end: interactions signed with Ed25519 (cryptography) as Discord signs them, through
the real ASGI app, the discord.wasm adapter, the run service and the echo agent, to a fake Discord
API on loopback."""

import json
import time

import pytest
from django.test import AsyncClient

from agents.models import Agent
from agents.store import get_store
from routing.models import Binding
from tests.webhooks_fixtures import DISCORD_APP, DISCORD_GUILD, DiscordSigner, adapter_plugin, discord_ask, discord_ping
from webhooks import inbound
from webhooks.models import ChannelEndpoint, InboundEvent

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_layer", "process_store"),
]

TOKEN = discord_ask("x")["token"]


@pytest.fixture
def signer():
    return DiscordSigner()


@pytest.fixture
def discord(fake_discord, signer, monkeypatch, transactional_db):
    monkeypatch.setenv("DISCORD_PUBLIC_KEY", signer.public_hex)
    fake_discord.issue(DISCORD_APP, TOKEN)
    agent = Agent.objects.create(name="helper", provider="echo")
    Binding.objects.create(agent=agent, channel="discord")
    return ChannelEndpoint.objects.create(
        name="discord",
        adapter=adapter_plugin("discord"),
        auth=ChannelEndpoint.Auth.DISCORD,
        secret_env="DISCORD_PUBLIC_KEY",
        api_base_url=fake_discord.api_base_url,
        sender_policy="open",
    )


async def post(signer, body: dict, headers: dict | None = None):
    raw = json.dumps(body).encode()
    response = await AsyncClient().post(
        "/hooks/discord/", raw, content_type="application/json", headers=headers or signer.headers(raw)
    )
    await inbound.idle()
    return response


async def test_a_ping_is_answered_pong_and_stores_nothing(discord, signer, fake_discord):
    response = await post(signer, discord_ping())
    assert response.status_code == 200
    assert response.json() == {"type": 1}
    assert await InboundEvent.objects.acount() == 0
    assert fake_discord.requests == []


async def test_ask_is_deferred_in_the_http_answer_and_the_reply_edits_the_original_response(discord, signer, fake_discord):
    response = await post(signer, discord_ask("what is 6 times 7?"))
    assert response.status_code == 200
    assert response.json() == {"type": 5}, "the deferral goes back in the request's own answer"
    [edit] = fake_discord.edits()
    assert edit.path == f"/api/v10/webhooks/{DISCORD_APP}/{TOKEN}/messages/@original"
    assert edit.json == {"content": "what is 6 times 7?", "allowed_mentions": {"parse": []}}
    assert "authorization" not in edit.headers, "the interaction token in the path is the only credential"
    assert fake_discord.followups() == []
    event = await InboundEvent.objects.aget()
    assert (event.status, event.account, event.guild, event.peer, event.sender, event.update_id) == (
        "replied", DISCORD_APP, DISCORD_GUILD, "1500000000000000001", "1400000000000000001", "1300000000000000002"
    )
    assert event.reply_ref == "", "the interaction token is not kept once the event is finished"


async def test_a_long_answer_edits_the_first_2000_characters_and_follows_up_with_the_rest(discord, signer, fake_discord):
    text = "a" * 1999 + "é" + "b" * 600
    await post(signer, discord_ask(text))
    [edit] = fake_discord.edits()
    [followup] = fake_discord.followups()
    assert edit.json["content"] == "a" * 1999 + "é"
    assert followup.path == f"/api/v10/webhooks/{DISCORD_APP}/{TOKEN}"
    assert followup.json["content"] == "b" * 600
    assert (await InboundEvent.objects.aget()).status == "replied"


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda raw: DiscordSigner().headers(raw), id="another-key"),
        pytest.param(lambda raw: {"X-Signature-Ed25519": "00" * 64, "X-Signature-Timestamp": str(int(time.time()))},
                     id="zero-signature"),
        pytest.param(lambda raw: {"X-Signature-Timestamp": str(int(time.time()))}, id="unsigned"),
    ],
)
async def test_a_bad_ed25519_signature_gets_401_and_nothing_runs(discord, signer, fake_discord, make_headers):
    for body in (discord_ping(), discord_ask("let me in")):
        raw = json.dumps(body).encode()
        response = await post(signer, body, make_headers(raw))
        assert response.status_code == 401
    assert await InboundEvent.objects.acount() == 0
    assert fake_discord.requests == []
    assert (await get_store().list_sessions(channel="discord"))["total"] == 0


async def test_a_stale_timestamp_gets_401(discord, signer):
    raw = json.dumps(discord_ping()).encode()
    assert (await post(signer, discord_ping(), signer.headers(raw, int(time.time()) - 301))).status_code == 401


async def test_a_command_without_text_gets_a_hint_only_the_user_sees(discord, signer, fake_discord):
    body = discord_ask("x")
    body["data"]["options"] = []
    response = await post(signer, body)
    assert response.json() == {
        "type": 4,
        "data": {"content": "Add what you want to ask after the command, e.g. /ask text:hello", "flags": 64},
    }
    assert await InboundEvent.objects.acount() == 0


async def test_a_binding_on_the_guild_wins_for_that_servers_messages_and_a_dm_has_no_guild(discord, signer, fake_discord):
    server_agent = await Agent.objects.acreate(name="server", provider="echo")
    await Binding.objects.acreate(agent=server_agent, guild=DISCORD_GUILD)
    await post(signer, discord_ask("in the server", interaction_id="1300000000000000010"))
    await post(signer, discord_ask("in a DM", guild=None, interaction_id="1300000000000000011"))
    events = [(e.agent, e.guild) async for e in InboundEvent.objects.order_by("pk")]
    assert events == [("server", DISCORD_GUILD), ("helper", "")]
    assert [e.json["content"] for e in fake_discord.edits()] == ["in the server", "in a DM"]
