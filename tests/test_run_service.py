"""The run service on its own: start a run, read its events, abort it, with no gateway involved (the real
echo provider, the real sandbox, the real embedded session store, the in-process worker)."""

import pytest
from channels.db import database_sync_to_async

from agents.runtime import service
from agents.runtime.board import get_board
from agents.store import get_store
from routing.models import Binding
from routing.resolver import Message
from tests.runtime_fixtures import assert_gap_free, echo_plugin, make_agent, spin_plugin, text_of

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_layer", "process_store")]

ME = service.Origin("token:tester", "test", agents=frozenset({"*"}))


async def all_events(run_id, after_seq=0, origin=ME, **kwargs) -> list[dict]:
    return [event async for event in service.events(origin, run_id, after_seq, **kwargs)]


async def test_a_run_started_through_the_service_streams_its_events_and_is_stored():
    agent = await make_agent("helper")
    await Binding.objects.acreate(agent=agent, channel="web")
    started = await service.start(ME, "hello there world", route=Message(channel="web", peer="alice"))
    assert (started.agent, started.session_key, started.queued, started.admitted) == (
        "helper", "agent:helper:web:token%3Atester:alice", False, True)
    events = await all_events(started.run_id, admitted=True)
    assert [e["type"] for e in events] == ["delta", "delta", "delta", "done"]
    assert text_of(events) == "hello there world"
    assert_gap_free(events)
    assert all((e["run_id"], e["session_key"]) == (started.run_id, started.session_key) for e in events)
    history = await get_store().history(started.session_key)
    assert [(m["role"], m["content"][0]["text"]) for m in history["messages"]] == [
        ("user", "hello there world"), ("assistant", "hello there world")]
    assert await service.status(ME, started.run_id) == "done"
    # Read again later, from any seq: the same events, in order.
    assert await all_events(started.run_id, 2) == events[2:]


async def test_a_run_records_who_asked_and_through_which_way_in():
    await make_agent("helper")
    started = await service.start(ME, "hi", agent="helper")
    await all_events(started.run_id, admitted=True)
    run = await get_board().run(started.run_id)
    assert run["payload"]["origin"] == {"principal": "token:tester", "entry": "test"}


async def test_a_tool_call_runs_in_the_sandbox():
    await echo_plugin()
    await make_agent("helper", tools=["echo"])
    started = await service.start(ME, '/tool echo.echo {"text": "from the sandbox"}', agent="helper")
    events = await all_events(started.run_id, admitted=True)
    result = next(e for e in events if e["type"] == "tool_result")
    assert (result["name"], result["is_error"]) == ("echo.echo", False)
    assert "from the sandbox" in result["content"]


async def test_the_same_idempotency_key_returns_the_first_run():
    await make_agent("helper")
    first = await service.start(ME, "once", agent="helper", idempotency_key="k1")
    events = await all_events(first.run_id, admitted=True)
    again = await service.start(ME, "once", agent="helper", idempotency_key="k1")
    assert (again.run_id, again.admitted) == (first.run_id, False)
    assert await all_events(again.run_id) == events


async def test_abort_stops_a_running_tool_and_the_run_ends_aborted():
    await spin_plugin()
    await make_agent("helper", tools=["spin"])
    started = await service.start(ME, "/tool spin.spin {}", agent="helper")
    seen = []
    async for event in service.events(ME, started.run_id, admitted=True):
        seen.append(event)
        if event["type"] == "tool_call":
            assert await service.abort(ME, started.run_id) is True
    assert seen[-1]["type"] == "done" and seen[-1]["stop_reason"] == "aborted"
    assert (await get_store().get_run(started.run_id))["status"] == "aborted"
    assert await service.abort(ME, started.run_id) is False


async def test_refusals_are_typed_with_a_stable_reason():
    await make_agent("strict", busy_policy="reject")
    with pytest.raises(service.InvalidInput) as bad:
        await service.start(ME, "   ", agent="strict")
    assert bad.value.param == "text"
    with pytest.raises(service.InvalidInput, match="longer than"):
        await service.start(ME, "x" * (service.MAX_TEXT + 1), agent="strict")
    with pytest.raises(service.NotFound) as missing:
        await service.start(ME, "hi", agent="ghost")
    assert missing.value.reason == "no_agent"
    with pytest.raises(service.NotFound) as unrouted:
        await service.start(ME, "hi", route=Message(channel="nowhere"))
    assert unrouted.value.reason == "no_route"
    with pytest.raises(service.NotFound) as unknown:
        await service.status(ME, "01NOSUCHRUN")
    assert unknown.value.reason == "no_run"
    await spin_plugin()
    await make_agent("busy", tools=["spin"], busy_policy="reject")
    running = await service.start(ME, "/tool spin.spin {}", agent="busy", route=Message(peer="p"))
    with pytest.raises(service.SessionBusy) as busy:
        await service.start(ME, "second", agent="busy", route=Message(peer="p"))
    assert busy.value.reason == "session_busy" and busy.value.extra["session_key"] == running.session_key
    await service.abort(ME, running.run_id)
    await all_events(running.run_id, admitted=True)


async def test_a_given_context_replaces_the_stored_history_and_only_the_new_message_is_stored():
    await make_agent("helper", system_prompt="you help")
    route = Message(channel="api", peer="p")
    earlier = await service.start(ME, "stored words here", agent="helper", route=route)
    await all_events(earlier.run_id, admitted=True)
    context = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "one two"},
               {"role": "assistant", "content": "three"}]
    started = await service.start(ME, "four five six", agent="helper", route=route, context=context)
    events = await all_events(started.run_id, admitted=True)
    assert text_of(events) == "four five six"
    # The echo provider counts every word it was sent: the agent's prompt and the given system text
    # (2 + 2), the given messages (2 + 1) and the new one (3); not the session's stored history.
    assert events[-1]["usage"]["input_tokens"] == 2 + 2 + 2 + 1 + 3
    history = await get_store().history(started.session_key)
    assert [m["content"][0]["text"] for m in history["messages"]] == [
        "stored words here", "stored words here", "four five six", "four five six"]
    empty = await service.start(ME, "alone", agent="helper", route=route, context=[])
    assert (await all_events(empty.run_id, admitted=True))[-1]["usage"]["input_tokens"] == 2 + 1


async def test_a_given_context_is_checked_before_anything_is_stored():
    await make_agent("helper")
    for context, param in [({"role": "user"}, "context"), ([{"role": "tool", "content": "x"}], "context[0]"),
                           ([{"role": "user", "content": 5}], "context[0]"),
                           ([{"role": "user", "content": "x"}] * (service.MAX_CONTEXT_MESSAGES + 1), "context"),
                           ([{"role": "user", "content": "x" * service.MAX_TEXT}] * 21, "context")]:
        with pytest.raises(service.InvalidInput) as bad:
            await service.start(ME, "hi", agent="helper", route=Message(peer="checked"), context=context)
        assert bad.value.param == param
    page = await get_store().list_sessions(owner=ME.principal)
    assert page["total"] == 0


OTHER = service.Origin("token:other", "test", agents=frozenset({"*"}))


async def test_someone_elses_run_is_as_unknown_as_one_that_never_was():
    await make_agent("helper")
    started = await service.start(ME, "mine", agent="helper")
    events = await all_events(started.run_id, admitted=True)
    for attempt in (service.status(OTHER, started.run_id), service.abort(OTHER, started.run_id),
                    all_events(started.run_id, origin=OTHER)):
        with pytest.raises(service.NotFound) as hidden:
            await attempt
        assert hidden.value.reason == "no_run"
    reader = service.Origin("token:auditor", "test", reads_all=True)
    assert await all_events(started.run_id, origin=reader) == events
    with pytest.raises(service.NotFound):
        await service.abort(reader, started.run_id)
    assert await service.abort(service.Origin("token:ops", "test", steers_all=True), started.run_id) is False


async def test_a_principal_talks_in_its_own_namespace_and_never_lands_in_anothers():
    await make_agent("helper")
    mine = await service.start(ME, "one", agent="helper", route=Message(channel="web", peer="p"))
    theirs = await service.start(OTHER, "two", agent="helper", route=Message(channel="web", peer="p"))
    assert mine.session_key != theirs.session_key
    with pytest.raises(service.Forbidden) as refused:
        await service.start(OTHER, "three", agent="helper", route=Message(channel="web", account="token:tester"))
    assert refused.value.extra["permission"] == "account"
    operator = service.Origin("loopback", "test", agents=frozenset({"*"}), steers_all=True)
    joined = await service.start(operator, "four", agent="helper",
                                 route=Message(channel="web", account="token:tester", peer="p"))
    assert joined.session_key == mine.session_key, "who may steer every conversation may join one"


async def test_a_platforms_channel_needs_its_permission_and_naming_an_agent_needs_its_own():
    from tests.webhooks_fixtures import adapter_plugin
    from webhooks.models import ChannelEndpoint

    await make_agent("helper")
    await Binding.objects.acreate(agent=await make_agent("router"), channel="")
    await database_sync_to_async(ChannelEndpoint.objects.create)(
        name="telegram", adapter=await database_sync_to_async(adapter_plugin)("telegram"), auth="telegram_secret_token",
        secret_env="X", account="bot")
    bot_user = Message(channel="telegram", account="bot", peer="777")
    with pytest.raises(service.Forbidden) as refused:
        await service.start(ME, "let me in", route=bot_user)
    assert refused.value.extra["permission"] == "channel"
    bridge = service.Origin("token:bridge", "test", channels=frozenset({"telegram"}))
    started = await service.start(bridge, "as the platform", route=bot_user)
    assert started.session_key == "agent:router:telegram:bot:777"
    assert (await get_store().get_run(started.run_id))["owner"] == "channel:telegram"
    with pytest.raises(service.Forbidden) as named:
        await service.start(bridge, "hi", agent="helper")
    assert named.value.extra["permission"] == "agent"
    await all_events(started.run_id, origin=bridge, admitted=True)


async def test_idempotency_keys_of_different_principals_never_meet():
    await make_agent("helper")
    operator = service.Origin("loopback", "test", agents=frozenset({"*"}), steers_all=True)
    route = Message(channel="web", account="token:other", peer="p")
    first = await service.start(operator, "one", agent="helper", route=route, idempotency_key="k")
    second = await service.start(OTHER, "two", agent="helper", route=route, idempotency_key="k")
    assert second.session_key == first.session_key, "the same conversation"
    assert second.run_id != first.run_id and second.admitted, "yet the other's key did not capture this run"
    again = await service.start(OTHER, "two", agent="helper", route=route, idempotency_key="k")
    assert (again.run_id, again.admitted) == (second.run_id, False)
