"""The run service on its own: start a run, read its events, abort it, with no gateway involved (the real
echo provider, the real sandbox, the real embedded session store, the in-process worker)."""

import pytest

from agents.runtime import service
from agents.runtime.board import get_board
from agents.store import get_store
from routing.models import Binding
from routing.resolver import Message
from tests.runtime_fixtures import assert_gap_free, echo_plugin, make_agent, spin_plugin, text_of

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_layer", "process_store")]

ME = service.Origin("token:tester", "test")


async def all_events(run_id, after_seq=0, **kwargs) -> list[dict]:
    return [event async for event in service.events(run_id, after_seq, **kwargs)]


async def test_a_run_started_through_the_service_streams_its_events_and_is_stored():
    agent = await make_agent("helper")
    await Binding.objects.acreate(agent=agent, channel="web")
    started = await service.start(ME, "hello there world", route=Message(channel="web", peer="alice"))
    assert (started.agent, started.session_key, started.queued, started.admitted) == (
        "helper", "agent:helper:web:-:alice", False, True)
    events = await all_events(started.run_id, admitted=True)
    assert [e["type"] for e in events] == ["delta", "delta", "delta", "done"]
    assert text_of(events) == "hello there world"
    assert_gap_free(events)
    assert all((e["run_id"], e["session_key"]) == (started.run_id, started.session_key) for e in events)
    history = await get_store().history(started.session_key)
    assert [(m["role"], m["content"][0]["text"]) for m in history["messages"]] == [
        ("user", "hello there world"), ("assistant", "hello there world")]
    assert await service.status(started.run_id) == "done"
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
    async for event in service.events(started.run_id, admitted=True):
        seen.append(event)
        if event["type"] == "tool_call":
            assert await service.abort(started.run_id) is True
    assert seen[-1]["type"] == "done" and seen[-1]["stop_reason"] == "aborted"
    assert (await get_store().get_run(started.run_id))["status"] == "aborted"
    assert await service.abort(started.run_id) is False


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
        await service.status("01NOSUCHRUN")
    assert unknown.value.reason == "no_run"
    await spin_plugin()
    await make_agent("busy", tools=["spin"], busy_policy="reject")
    running = await service.start(ME, "/tool spin.spin {}", agent="busy", route=Message(peer="p"))
    with pytest.raises(service.SessionBusy) as busy:
        await service.start(ME, "second", agent="busy", route=Message(peer="p"))
    assert busy.value.reason == "session_busy" and busy.value.extra["session_key"] == running.session_key
    await service.abort(running.run_id)
    await all_events(running.run_id, admitted=True)
