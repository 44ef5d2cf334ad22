"""End to end: a Telegram update in, the echo agent's reply out to a fake Bot API on loopback,
through the real ASGI app, the adapter in the sandbox, the run service and the session store."""

import json
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import AsyncClient
from django.utils import timezone

from agents.models import Agent
from agents.runtime.board import get_board
from agents.store import get_store
from routing.models import Binding
from routing.resolver import aresolve_route
from tests.runtime_fixtures import SAMPLE_PLUGINS, make_agent, make_plugin
from tests.webhooks_fixtures import BOT_TOKEN, adapter_plugin
from webhooks import inbound
from webhooks.models import ChannelEndpoint, InboundEvent

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_layer", "process_store"),
]

SECRET = "e2e-webhook-secret"


def update(update_id, text, chat_id=777001, message_id=42):
    return {
        "update_id": update_id,
        "message": {
            "message_id": message_id,
            "from": {"id": chat_id, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": chat_id, "first_name": "Ada", "type": "private"},
            "date": 1764072000,
            "text": text,
        },
    }


@pytest.fixture
def telegram(fake_telegram, monkeypatch, transactional_db):
    monkeypatch.setenv("E2E_TG_SECRET", SECRET)
    monkeypatch.setenv("E2E_TG_TOKEN", BOT_TOKEN)
    agent = Agent.objects.create(name="helper", provider="echo", tools=["calc"])
    Binding.objects.create(agent=agent, channel="telegram")
    return ChannelEndpoint.objects.create(
        name="telegram",
        adapter=adapter_plugin("telegram"),
        auth=ChannelEndpoint.Auth.TELEGRAM,
        secret_env="E2E_TG_SECRET",
        account="exoclaw_bot",
        api_base_url=fake_telegram.url,
        token_env="E2E_TG_TOKEN",
        sender_policy="open",
    )


async def staff() -> AsyncClient:
    client = AsyncClient()
    await client.aforce_login(await User.objects.acreate(username="operator", is_staff=True, is_superuser=True))
    return client


async def post(body, secret=SECRET):
    headers = {"X-Telegram-Bot-Api-Secret-Token": secret} if secret is not None else {}
    response = await AsyncClient().post(
        "/hooks/telegram/", json.dumps(body), content_type="application/json", headers=headers
    )
    await inbound.idle()
    return response


async def test_an_update_gets_the_agent_reply_in_the_same_chat_and_lands_in_the_session_browser(telegram, fake_telegram):
    response = await post(update(815000001, "hello there"))
    assert response.status_code == 200, response.content
    assert fake_telegram.sent_messages() == [
        {"chat_id": 777001, "text": "hello there", "reply_parameters": {"message_id": 42, "allow_sending_without_reply": True}}
    ]
    event = await InboundEvent.objects.aget()
    assert (event.status, event.agent, event.session_key) == ("replied", "helper", "agent:helper:telegram:exoclaw_bot:777001")
    # Started through the run service, as the webhook, not as a gateway client.
    run = await get_board().run(event.run_id)
    assert run["payload"]["origin"] == {"principal": "webhook:telegram", "entry": "webhook"}
    [session] = (await get_store().list_sessions(channel="telegram"))["items"]
    assert (session["channel"], session["account"], session["peer"]) == ("telegram", "exoclaw_bot", "777001")
    history = await get_store().history(event.session_key)
    assert [(m["role"], m["content"][0]["text"]) for m in history["messages"]] == [
        ("user", "hello there"),
        ("assistant", "hello there"),
    ]
    page = (await (await staff()).get("/admin/sessions/", {"channel": "telegram"})).content.decode()
    assert "agent:helper:telegram:exoclaw_bot:777001" in page and "<td>telegram</td>" in page and "<td>777001</td>" in page


async def test_a_tool_call_runs_in_the_sandbox_and_its_result_is_the_reply(telegram, fake_telegram):
    await make_plugin("calc", SAMPLE_PLUGINS / "calc.wasm")
    response = await post(update(815000002, '/tool calc.calc {"expr": "6*7"}'))
    assert response.status_code == 200
    [sent] = fake_telegram.sent_messages()
    assert sent["chat_id"] == 777001 and "42" in sent["text"], sent
    event = await InboundEvent.objects.aget()
    run = await get_store().get_run(event.run_id)
    assert [(c["name"], c["outcome"]) for c in run["tool_calls"]] == [("calc.calc", "ok")]


async def test_a_wrong_secret_runs_nothing(telegram, fake_telegram):
    assert (await post(update(815000003, "hi"), secret="nope")).status_code == 401
    assert (await post(update(815000003, "hi"), secret=None)).status_code == 401
    assert fake_telegram.requests() == []
    assert (await get_store().list_sessions(channel="telegram"))["total"] == 0


async def test_the_same_update_twice_makes_one_run_and_one_reply(telegram, fake_telegram):
    assert (await post(update(815000004, "once"))).status_code == 200
    assert (await post(update(815000004, "once"))).json() == {"ok": True, "duplicate": True}
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["once"]
    event = await InboundEvent.objects.aget()
    assert len(await get_store().runs((await get_store().current_session(event.session_key))["id"])) == 1


async def test_a_429_then_success_delivers_the_reply_once(telegram, fake_telegram):
    fake_telegram.fail_next(429, "Too Many Requests: retry after 1", retry_after=1)
    assert (await post(update(815000005, "eventually"))).status_code == 200
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["eventually", "eventually"]
    event = await InboundEvent.objects.aget()
    assert (event.status, event.delivery_attempts) == ("replied", 2)


async def test_an_undeliverable_reply_is_recorded_on_the_run(telegram, fake_telegram):
    fake_telegram.fail_next(403, "Forbidden: bot was blocked by the user")
    assert (await post(update(815000006, "are you there"))).status_code == 200
    event = await InboundEvent.objects.aget()
    assert event.status == "undelivered"
    run = await get_store().get_run(event.run_id)
    assert run["error"] == (
        "reply not delivered to telegram: the reply could not be delivered: gave up after 1 attempt: "
        "HTTP 403: Forbidden: bot was blocked by the user"
    )
    session = await get_store().current_session(event.session_key)
    page = (await (await staff()).get(f"/admin/sessions/{session['id']}/")).content.decode()
    assert "HTTP 403: Forbidden: bot was blocked by the user" in page


async def test_a_trapping_format_outgoing_is_a_clear_error_on_the_run_and_the_server_keeps_serving(
    telegram, fake_telegram, monkeypatch
):
    from asgiref.sync import sync_to_async

    monkeypatch.setenv("TRAP_SECRET", "trap-secret")
    trap = await sync_to_async(adapter_plugin)("trap_adapter")
    await ChannelEndpoint.objects.acreate(
        name="trappy", adapter=trap, secret_env="TRAP_SECRET", api_base_url=fake_telegram.url, sender_policy="open"
    )
    agent = await make_agent("trapper")
    await Binding.objects.acreate(agent=agent, channel="trappy")
    import time

    from webhooks.signatures import signed_headers

    body = json.dumps({"id": "t1", "peer": "p1", "text": "hi"}).encode()
    response = await AsyncClient().post(
        "/hooks/trappy/", body, content_type="application/json", headers=signed_headers("trap-secret", body, int(time.time()))
    )
    await inbound.idle()
    assert response.status_code == 200
    event = await InboundEvent.objects.aget(endpoint__name="trappy")
    run = await get_store().get_run(event.run_id)
    assert "trap_adapter.format_outgoing: trap: wasm trap: wasm `unreachable` instruction executed" in run["error"]
    assert (await post(update(815000007, "still here"))).status_code == 200
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["still here"]


async def test_non_message_updates_and_malformed_bodies_run_nothing_and_store_nothing(telegram, fake_telegram):
    skipped = await post({"update_id": 815000008, "edited_message": update(1, "edited")["message"]})
    assert skipped.json() == {"ok": True, "skipped": "not a message update"}
    for body in ("{not json", [], {"message": {"text": "no update_id"}}):
        raw = body if isinstance(body, str) else json.dumps(body)
        response = await AsyncClient().post(
            "/hooks/telegram/", raw, content_type="application/json", headers={"X-Telegram-Bot-Api-Secret-Token": SECRET}
        )
        assert response.status_code == 400, raw
    await inbound.idle()
    assert fake_telegram.requests() == []
    assert await InboundEvent.objects.acount() == 0
    assert (await get_store().list_sessions())["total"] == 0


PAST = timedelta(minutes=5)
PEER = {"account": "exoclaw_bot", "peer": "777001", "message_id": "42"}


async def orphan(endpoint, update_id, text) -> InboundEvent:
    """What a process that stopped leaves behind: an accepted event whose lease has run out."""
    return await InboundEvent.objects.acreate(
        endpoint=endpoint, update_id=update_id, content=text, owner="gone-host:1:abc123",
        lease_until=timezone.now() - PAST, **PEER,
    )


async def test_an_event_left_by_a_stopped_process_is_taken_over_and_answered(telegram, fake_telegram):
    event = await orphan(telegram, "900001", "hello again")
    assert await inbound.keep_once() == [event.pk]
    await inbound.idle()
    event = await InboundEvent.objects.aget(pk=event.pk)
    assert (event.status, event.content, event.owner, event.lease_until) == ("replied", "", "", None)
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["hello again"]
    assert await inbound.keep_once() == [], "taken over once"


async def test_a_live_process_renews_its_leases_and_keeps_its_events(telegram, monkeypatch):
    event = await orphan(telegram, "900002", "mine")
    await InboundEvent.objects.filter(pk=event.pk).aupdate(owner=inbound.PROCESS)
    monkeypatch.setattr(inbound, "_handling", {event.pk})
    assert await inbound.keep_once() == []
    event = await InboundEvent.objects.aget(pk=event.pk)
    assert event.owner == inbound.PROCESS and event.lease_until > timezone.now() and event.status == "accepted"


async def test_a_taken_over_event_whose_run_had_finished_gets_that_runs_answer_not_a_second_run(telegram, fake_telegram):
    key = (await aresolve_route(channel="telegram", account="exoclaw_bot", peer="777001")).session_key
    store = get_store()
    # As the stopped process recorded it: the webhook's key for update 900003, in the platform's namespace.
    session, run = await store.start_run(key, "helper", "webhook:telegram|900003", channel="telegram",
                                         account="exoclaw_bot", peer="777001", owner="channel:telegram")
    await store.append_message(session["id"], "user", "what was asked", run_id=run["id"])
    await store.append_message(session["id"], "assistant", "the answer it gave", run_id=run["id"])
    await store.update_run(run["id"], status="done", stop_reason="end_turn")
    event = await orphan(telegram, "900003", "what was asked")
    await inbound.keep_once()
    await inbound.idle()
    event = await InboundEvent.objects.aget(pk=event.pk)
    assert (event.status, event.run_id) == ("replied", run["id"])
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["the answer it gave"]
    assert [r["id"] for r in await store.runs(session["id"])] == [run["id"]]


async def test_a_taken_over_event_whose_run_died_with_its_process_fails_as_worker_lost(telegram, fake_telegram, monkeypatch):
    from agents.runtime import service

    monkeypatch.setattr(service, "MAX_WAIT_SECONDS", 0.2)
    key = (await aresolve_route(channel="telegram", account="exoclaw_bot", peer="777001")).session_key
    session, run = await get_store().start_run(key, "helper", "webhook:telegram|900004", channel="telegram",
                                               account="exoclaw_bot", peer="777001", owner="channel:telegram")
    await get_store().update_run(run["id"], status="running")
    event = await orphan(telegram, "900004", "lost with it")
    await inbound.keep_once()
    await inbound.idle()
    event = await InboundEvent.objects.aget(pk=event.pk)
    assert event.status == "failed" and event.error.startswith("worker_lost: ")
    assert fake_telegram.sent_messages() == []


async def test_a_process_whose_event_was_taken_over_meanwhile_sends_nothing(telegram, fake_telegram):
    # Its lease lapsed (a stall) and another process took the event over: that one answers it.
    event = await orphan(telegram, "900005", "hello")
    await InboundEvent.objects.filter(pk=event.pk).aupdate(owner="other-host:2:def456", lease_until=timezone.now() + PAST)
    event.endpoint = telegram
    await inbound.deliver_reply(event, "a reply nobody should get twice")
    assert fake_telegram.sent_messages() == []
    event = await InboundEvent.objects.aget(pk=event.pk)
    assert (event.status, event.owner) == ("accepted", "other-host:2:def456")


async def test_a_chat_token_cannot_talk_in_a_telegram_users_conversation_nor_read_it(telegram, fake_telegram, connect):
    await post(update(815000100, "my card PIN is 4242"))
    key = (await InboundEvent.objects.aget()).session_key
    attacker = await connect(scopes=("chat",))
    answer = await attacker.call("chat.send", {"channel": "telegram", "account": "exoclaw_bot", "peer": "777001",
                                               "text": "what did I tell you before?"})
    assert (answer["error"]["code"], answer["error"]["data"]["reason"]) == (-32002, "forbidden")
    assert answer["error"]["data"]["permission"] == "channel"
    answer = await attacker.call("sessions.history", {"session_key": key})
    assert answer["error"]["data"]["reason"] == "no_session"
    history = await get_store().history(key)
    assert [m["content"][0]["text"] for m in history["messages"]] == ["my card PIN is 4242", "my card PIN is 4242"]


async def test_a_clients_idempotency_key_cannot_capture_a_later_update(telegram, fake_telegram, connect):
    # Even a bridge allowed to post in the telegram channel: its keys are its own.
    bridge = await connect(scopes=("chat",), channels=("telegram",))
    taken = await bridge.result("chat.send", {"channel": "telegram", "account": "exoclaw_bot", "peer": "777001",
                                              "text": "attacker text", "idempotency_key": "webhook:telegram:1001"})
    await bridge.finished(taken["run_id"])
    await post(update(1001, "the user's own message"))
    event = await InboundEvent.objects.aget()
    assert event.status == "replied" and event.run_id != taken["run_id"]
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["the user's own message"]
    history = await get_store().history(event.session_key)
    assert "the user's own message" in [m["content"][0]["text"] for m in history["messages"]]
