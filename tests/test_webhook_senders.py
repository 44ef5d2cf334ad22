"""Who may talk to a bot, on Telegram, Slack and Discord alike: the open, allowlist and pairing
policies, `manage.py pair`, and refused messages recorded and rate limited. Real adapters, the run
service and the echo agent; the platforms are the fakes on loopback."""

import io
import json
import re
from dataclasses import dataclass, field
from itertools import count

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import AsyncClient

from agents.models import Agent
from agents.store import get_store
from routing.models import Binding
from tests.webhooks_fixtures import (
    BOT_TOKEN,
    DISCORD_APP,
    SLACK_BOT_TOKEN,
    SLACK_SIGNING_SECRET,
    DiscordSigner,
    adapter_plugin,
    discord_ask,
    slack_dm,
    slack_headers,
)
from webhooks import inbound, senders
from webhooks.models import ChannelEndpoint, InboundEvent, Pairing

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_layer", "process_store"),
]

TG_SECRET = "senders-tg-secret"
CODE = re.compile(r"pairing code is ([A-Z0-9]{4}-[A-Z0-9]{4})")
_ids = count(1)


@dataclass
class Platform:
    """One channel endpoint and how its users write to it; `replies()` is what the bot sent back."""

    name: str
    endpoint: ChannelEndpoint
    write: object  # async (sender, text, chat=None) -> response
    replies: object  # () -> list[str]
    ids: dict = field(default_factory=dict)


def telegram_platform(fake_telegram, endpoint) -> Platform:
    async def write(sender, text, chat=None):
        n = next(_ids)
        chat = {"id": int(chat), "type": "supergroup", "title": "team"} if chat else {"id": int(sender), "type": "private"}
        body = {"update_id": 815100000 + n, "message": {"message_id": n, "date": 1764072000, "text": text, "chat": chat,
                                                         "from": {"id": int(sender), "is_bot": False, "first_name": "U"}}}
        return await _post("telegram", json.dumps(body).encode(), {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})

    return Platform("telegram", endpoint, write, lambda: [m["text"] for m in fake_telegram.sent_messages()])


def slack_platform(fake_slack, endpoint) -> Platform:
    async def write(sender, text, chat=None):
        n = next(_ids)
        raw = json.dumps(slack_dm(text, user=sender, ts=f"1712345678.{n:06d}", event_id=f"Ev0SENDERS{n}")).encode()
        return await _post("slack", raw, slack_headers(raw))

    return Platform("slack", endpoint, write, lambda: [r.json["text"] for r in fake_slack.posted()])


def discord_platform(fake_discord, endpoint, signer) -> Platform:
    async def write(sender, text, chat=None):
        n = next(_ids)
        token = f"interaction-token-{n}"
        fake_discord.issue(DISCORD_APP, token)
        raw = json.dumps(discord_ask(text, user=sender, interaction_id=str(1300000000000100000 + n), token=token)).encode()
        return await _post("discord", raw, signer.headers(raw))

    def replies():
        return [r.json["content"] for r in fake_discord.requests if r.method in ("PATCH", "POST")]

    return Platform("discord", endpoint, write, replies)


async def _post(channel, raw, headers):
    response = await AsyncClient().post(f"/hooks/{channel}/", raw, content_type="application/json", headers=headers)
    await inbound.idle()
    assert response.status_code == 200, response.content
    return response


# Senders as each platform numbers its users.
SENDERS = {
    "telegram": ("1001", "1002", "1003", "1004"),
    "slack": ("U0ALICE01", "U0BOB0001", "U0CAROL01", "U0DAVE001"),
    "discord": ("1400000000000000011", "1400000000000000012", "1400000000000000013", "1400000000000000014"),
}


@pytest.fixture(params=["telegram", "slack", "discord"])
def platform(request, monkeypatch, transactional_db, fake_telegram, fake_slack, fake_discord):
    monkeypatch.setenv("TG_SECRET", TG_SECRET)
    monkeypatch.setenv("TG_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("SLACK_SECRET", SLACK_SIGNING_SECRET)
    monkeypatch.setenv("SLACK_TOKEN", SLACK_BOT_TOKEN)
    agent = Agent.objects.create(name="helper", provider="echo")
    Binding.objects.create(agent=agent)
    name = request.param
    if name == "telegram":
        endpoint = ChannelEndpoint.objects.create(
            name="telegram", adapter=adapter_plugin("telegram"), auth=ChannelEndpoint.Auth.TELEGRAM,
            secret_env="TG_SECRET", api_base_url=fake_telegram.url, token_env="TG_TOKEN", account="exoclaw_bot",
        )
        return telegram_platform(fake_telegram, endpoint)
    if name == "slack":
        endpoint = ChannelEndpoint.objects.create(
            name="slack", adapter=adapter_plugin("slack"), auth=ChannelEndpoint.Auth.SLACK, secret_env="SLACK_SECRET",
            api_base_url=fake_slack.api_base_url, token_env="SLACK_TOKEN",
        )
        return slack_platform(fake_slack, endpoint)
    signer = DiscordSigner()
    monkeypatch.setenv("DISCORD_KEY", signer.public_hex)
    endpoint = ChannelEndpoint.objects.create(
        name="discord", adapter=adapter_plugin("discord"), auth=ChannelEndpoint.Auth.DISCORD, secret_env="DISCORD_KEY",
        api_base_url=fake_discord.api_base_url,
    )
    return discord_platform(fake_discord, endpoint, signer)


async def set_policy(platform, policy, allowed=()):
    platform.endpoint.sender_policy = policy
    platform.endpoint.allowed_senders = list(allowed)
    await platform.endpoint.asave()


async def statuses():
    return [(e.sender, e.status) async for e in InboundEvent.objects.order_by("pk")]


async def sessions() -> int:
    return (await get_store().list_sessions())["total"]


def pair(*args) -> str:
    out = io.StringIO()
    call_command("pair", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


async def test_new_endpoints_use_pairing(platform):
    assert platform.endpoint.sender_policy == "pairing"


async def test_pairing_gives_an_unknown_sender_one_code_and_no_run_until_an_operator_approves_it(platform):
    alice = SENDERS[platform.name][0]
    await platform.write(alice, "hello bot")
    [reply] = platform.replies()
    code = CODE.search(reply).group(1)
    assert await sessions() == 0, "no agent run for an unknown sender"
    await platform.write(alice, "hello? anyone?")
    assert len(platform.replies()) == 1, "a second message within the hour gets no second code"
    assert await statuses() == [(alice, "refused"), (alice, "refused")]

    assert f"approved {code}" in await sync_to_async(pair)("approve", code.lower().replace("-", ""))
    await platform.write(alice, "now may I?")
    assert platform.replies()[1:] == ["now may I?"]
    assert (await statuses())[-1] == (alice, "replied")
    assert await sessions() == 1


async def test_allowlist_refuses_senders_not_on_it_without_a_run_or_a_reply(platform):
    alice, bob = SENDERS[platform.name][:2]
    await set_policy(platform, "allowlist", [alice])
    await platform.write(bob, "let me in")
    assert platform.replies() == []
    assert await sessions() == 0
    event = await InboundEvent.objects.aget()
    assert (event.status, event.error, event.agent, event.run_id) == (
        "refused", f"sender {bob} is not on the allowlist", "", ""
    )
    await platform.write(alice, "I am on the list")
    assert platform.replies() == ["I am on the list"]


async def test_open_answers_everyone(platform):
    await set_policy(platform, "open")
    for sender in SENDERS[platform.name][:3]:
        await platform.write(sender, f"hi from {sender}")
    assert platform.replies() == [f"hi from {s}" for s in SENDERS[platform.name][:3]]


async def test_a_revoked_sender_is_refused_without_a_reply(platform):
    alice = SENDERS[platform.name][0]
    await platform.write(alice, "hello")
    pairing = await Pairing.objects.aget()
    await sync_to_async(pair)("approve", pairing.code)
    assert "revoked" in await sync_to_async(pair)("revoke", pairing.code)
    await platform.write(alice, "still there?")
    assert len(platform.replies()) == 1  # only the code, long ago
    assert (await InboundEvent.objects.alatest("pk")).error == f"sender {alice}'s pairing {pairing.code} was revoked"


@pytest.mark.parametrize("platform", ["telegram"], indirect=True)
async def test_in_a_group_chat_each_member_is_checked_on_their_own(platform):
    alice, bob = SENDERS["telegram"][:2]
    await set_policy(platform, "allowlist", [alice])
    group = "-1001234567890"
    await platform.write(alice, "from alice", chat=group)
    await platform.write(bob, "from bob", chat=group)
    assert platform.replies() == ["from alice"]
    assert [(e.peer, e.sender, e.status) async for e in InboundEvent.objects.order_by("pk")] == [
        (group, alice, "replied"), (group, bob, "refused")
    ]


@pytest.mark.parametrize("platform", ["telegram"], indirect=True)
async def test_a_flood_of_unknown_senders_gets_no_flood_of_replies(platform, monkeypatch):
    monkeypatch.setattr(senders, "MAX_PENDING", 2)
    for _ in range(3):
        for sender in SENDERS["telegram"]:
            await platform.write(sender, "spam")
    assert len(platform.replies()) == 2, "one code for each of the first two senders, nothing more"
    assert [s for _, s in await statuses()] == ["refused"] * 12
    assert await Pairing.objects.acount() == 2
    assert await sessions() == 0


@pytest.mark.parametrize("platform", ["telegram"], indirect=True)
async def test_pair_list_shows_pending_codes_and_an_unknown_code_is_a_clear_error(platform):
    await platform.write(SENDERS["telegram"][0], "hello")
    pairing = await Pairing.objects.aget()
    listing = await sync_to_async(pair)("list")
    assert pairing.code in listing and "telegram" in listing and SENDERS["telegram"][0] in listing
    with pytest.raises(CommandError, match="no pairing with code 'ZZZZ-ZZZZ'"):
        await sync_to_async(pair)("approve", "ZZZZ-ZZZZ")
