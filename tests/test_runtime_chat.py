"""The agent runtime in one process (in-memory channel layer): chat.send to the last event, with the
real echo provider, the real sandbox and the real embedded session store."""

import threading

import pytest

from agents.runtime.board import get_board
from agents.store import get_store
from tests.fakes import anthropic_server
from tests.fakes.http import Stream, Text
from routing.models import Binding
from tests.runtime_fixtures import assert_gap_free, echo_plugin, make_agent, make_token, spin_plugin, text_of

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_layer", "process_store")]


def kinds(events):
    return [e["type"] for e in events]


async def test_a_message_streams_back_word_by_word_and_is_stored(connect):
    await make_agent("helper")
    client = await connect(name="alice-app")
    sent = await client.result("chat.send", {"text": "hello there world", "agent": "helper", "peer": "alice"})
    assert sent["agent"] == "helper" and sent["queued"] is False
    assert sent["session_key"] == "agent:helper:-:token%3Aalice-app:alice", "the account is the principal"
    events = await client.finished(sent["run_id"])
    assert kinds(events) == ["delta", "delta", "delta", "done"]
    assert text_of(events) == "hello there world"
    assert_gap_free(events)
    done = events[-1]
    assert done["stop_reason"] == "end_turn" and done["usage"]["output_tokens"] == 3
    assert done["timings"]["first_delta_ms"] <= done["timings"]["total_ms"]
    assert all(e["run_id"] == sent["run_id"] and e["session_key"] == sent["session_key"] for e in events)
    history = await client.result("sessions.history", {"session_key": sent["session_key"]})
    assert [(m["role"], m["content"]) for m in history["messages"]] == [
        ("user", [{"type": "text", "text": "hello there world"}]),
        ("assistant", [{"type": "text", "text": "hello there world"}]),
    ]
    run = await get_store().get_run(sent["run_id"])
    assert (run["status"], run["stop_reason"], run["usage"]["output_tokens"]) == ("done", "end_turn", 3)
    origin = (await get_board().run(sent["run_id"]))["payload"]["origin"]
    assert origin["entry"] == "gateway" and origin["principal"].startswith("token:")


async def test_the_route_picks_the_agent_when_none_is_named(connect):
    agent = await make_agent("support")
    await Binding.objects.acreate(agent=agent, channel="webchat")
    client = await connect(name="bob-app")
    sent = await client.result("chat.send", {"text": "hi", "channel": "webchat", "peer": "bob"})
    assert (sent["agent"], sent["session_key"]) == ("support", "agent:support:webchat:token%3Abob-app:bob")
    assert text_of(await client.finished(sent["run_id"])) == "hi"


async def test_no_route_and_unknown_agent_are_clear_errors(connect):
    client = await connect()
    answer = await client.call("chat.send", {"text": "hi", "channel": "nowhere"})
    assert answer["error"]["data"]["reason"] == "no_route"
    answer = await client.call("chat.send", {"text": "hi", "agent": "ghost"})
    assert answer["error"]["data"]["reason"] == "no_agent"
    answer = await client.call("chat.send", {"text": "  ", "agent": "ghost"})
    assert answer["error"]["data"]["param"] == "text"


async def test_a_tool_call_runs_in_the_sandbox_and_its_result_goes_back_to_the_llm(connect):
    await echo_plugin()
    await make_agent("helper", tools=["echo"])
    client = await connect()
    sent = await client.result("chat.send", {"text": '/tool echo.echo {"text": "ping pong"}', "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert_gap_free(events)
    call = next(e for e in events if e["type"] == "tool_call")
    result = next(e for e in events if e["type"] == "tool_result")
    assert (call["name"], call["input"]) == ("echo.echo", {"text": "ping pong"})
    assert (result["call_id"], result["content"], result["is_error"], result["error_kind"]) == (
        call["call_id"], "ping pong", False, None)
    assert result["duration_ms"] > 0
    assert text_of(events) == "Tool echo.echo returned: ping pong"
    assert events[-1]["stop_reason"] == "end_turn"
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[1]["content"][0]["type"] == "tool_use"
    assert history[2]["content"] == [
        {"type": "tool_result", "tool_use_id": call["call_id"], "content": "ping pong", "is_error": False}]
    run = await get_store().get_run(sent["run_id"])
    assert [(c["name"], c["outcome"], c["output"]) for c in run["tool_calls"]] == [("echo.echo", "ok", "ping pong")]


async def test_a_tool_outside_the_allowlist_is_refused_and_the_llm_is_told(connect):
    await echo_plugin()
    await make_agent("helper", tools=[])
    client = await connect()
    sent = await client.result("chat.send", {"text": '/tool echo.echo {"text": "x"}', "agent": "helper"})
    events = await client.finished(sent["run_id"])
    result = next(e for e in events if e["type"] == "tool_result")
    assert (result["is_error"], result["error_kind"]) == (True, "not_allowed")
    assert text_of(events).startswith("Tool echo.echo failed: There is no tool named 'echo.echo'")


async def test_max_tool_rounds_ends_a_run_that_keeps_calling_tools(connect):
    await echo_plugin()
    await make_agent("helper", tools=["echo"], max_tool_rounds=0)
    client = await connect()
    sent = await client.result("chat.send", {"text": '/tool echo.echo {"text": "x"}', "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert kinds(events) == ["tool_call", "tool_result", "done"]
    assert events[1]["error_kind"] == "max_tool_rounds"
    assert events[-1]["stop_reason"] == "max_tool_rounds"
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert history[-1]["content"][0]["is_error"] is True


async def test_abort_cancels_a_running_tool_at_once_and_keeps_what_was_said(connect):
    await spin_plugin()
    await make_agent("helper", tools=["spin"])
    client = await connect()
    sent = await client.result("chat.send", {"text": "/tool spin.spin {}", "agent": "helper"})
    await client.until(sent["run_id"], lambda evs: "tool_call" in kinds(evs))
    assert await client.result("chat.abort", {"run_id": sent["run_id"]}) == {"run_id": sent["run_id"], "aborted": True}
    # The plugin's timeout is 20 s: finishing within 10 s means the run did not wait for it.
    events = await client.finished(sent["run_id"], timeout=10)
    assert events[-1]["type"] == "done" and events[-1]["stop_reason"] == "aborted"
    assert_gap_free(events)
    run = await get_store().get_run(sent["run_id"])
    assert (run["status"], run["stop_reason"]) == ("aborted", "aborted")
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert history[-1]["interrupted"] == "aborted" and history[-1]["content"][0]["is_error"] is True
    assert await client.result("chat.abort", {"run_id": sent["run_id"]}) == {"run_id": sent["run_id"], "aborted": False}


def held_answer(text: str, gate: threading.Event) -> Stream:
    """An Anthropic answer that streams its first word, then waits for `gate`."""
    return Stream(anthropic_server.events(Text(text)), pause_after=4, gate=gate)


async def anthropic_agent(server, **fields):
    return await make_agent("helper", provider="anthropic", model="m", base_url=server.base_url, **fields)


@pytest.fixture
def gate():
    g = threading.Event()
    yield g
    g.set()


async def test_abort_stops_the_llm_stream_and_keeps_the_partial_text(connect, fake_anthropic, gate, settings):
    settings.ANTHROPIC_API_KEY = "sk-test"
    await anthropic_agent(fake_anthropic)
    fake_anthropic.enqueue(held_answer("first and then more", gate))
    client = await connect()
    sent = await client.result("chat.send", {"text": "talk", "agent": "helper"})
    await client.until(sent["run_id"], lambda evs: "delta" in kinds(evs))
    await client.result("chat.abort", {"run_id": sent["run_id"]})
    events = await client.finished(sent["run_id"])
    assert kinds(events) == ["delta", "done"] and events[-1]["stop_reason"] == "aborted"
    assert fake_anthropic.requests[0].disconnected.wait(5), "the LLM request was not closed"
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert (history[-1]["content"], history[-1]["interrupted"]) == ([{"type": "text", "text": "first "}], "aborted")


async def test_a_busy_session_queues_the_next_message_until_the_first_run_ends(connect, fake_anthropic, gate, settings):
    settings.ANTHROPIC_API_KEY = "sk-test"
    await anthropic_agent(fake_anthropic, busy_policy="queue")
    fake_anthropic.enqueue(held_answer("first answer", gate), anthropic_server.message(Text("second answer")))
    client = await connect()
    first = await client.result("chat.send", {"text": "one", "agent": "helper"})
    await client.until(first["run_id"], lambda evs: "delta" in kinds(evs))
    second = await client.result("chat.send", {"text": "two", "agent": "helper"})
    assert second["queued"] is True and second["session_key"] == first["session_key"]
    assert len(fake_anthropic.requests) == 1, "the queued run must not start while the first is running"
    gate.set()
    assert text_of(await client.finished(first["run_id"])) == "first answer"
    assert text_of(await client.finished(second["run_id"])) == "second answer"
    history = (await client.result("sessions.history", {"session_key": first["session_key"]}))["messages"]
    assert [m["content"][0]["text"] for m in history] == ["one", "first answer", "two", "second answer"]


async def test_a_busy_session_rejects_the_next_message_when_the_agent_says_so(connect, fake_anthropic, gate, settings):
    settings.ANTHROPIC_API_KEY = "sk-test"
    await anthropic_agent(fake_anthropic, busy_policy="reject")
    fake_anthropic.enqueue(held_answer("first answer", gate), anthropic_server.message(Text("elsewhere")),
                           anthropic_server.message(Text("now")))
    client = await connect()
    first = await client.result("chat.send", {"text": "one", "agent": "helper"})
    await client.until(first["run_id"], lambda evs: "delta" in kinds(evs))
    answer = await client.call("chat.send", {"text": "me too", "agent": "helper"})
    assert answer["error"]["code"] == -32005 and answer["error"]["data"]["reason"] == "session_busy"
    other = await client.result("chat.send", {"text": "hi", "agent": "helper", "peer": "carol"})
    assert text_of(await client.finished(other["run_id"])) == "elsewhere"
    gate.set()
    await client.finished(first["run_id"])
    again = await client.result("chat.send", {"text": "and now?", "agent": "helper"})
    assert text_of(await client.finished(again["run_id"])) == "now"


async def test_the_same_idempotency_key_returns_the_same_run(connect):
    await make_agent("helper")
    token = await make_token(name="retrier")
    client = await connect(token=token)
    params = {"text": "only once", "agent": "helper", "idempotency_key": "k-1"}
    first = await client.result("chat.send", params)
    await client.finished(first["run_id"])
    other = await connect(token=token)  # the same principal, after a lost answer
    again = await other.result("chat.send", params)
    assert again["run_id"] == first["run_id"]
    replayed = await other.finished(again["run_id"])
    assert text_of(replayed) == "only once"
    history = (await client.result("sessions.history", {"session_key": first["session_key"]}))["messages"]
    assert [m["role"] for m in history] == ["user", "assistant"]


async def test_a_client_that_reconnects_gets_what_it_missed_and_then_the_rest_live(connect, fake_anthropic, gate, settings):
    settings.ANTHROPIC_API_KEY = "sk-test"
    await anthropic_agent(fake_anthropic)
    fake_anthropic.enqueue(held_answer("first of several words", gate))
    client = await connect()
    sent = await client.result("chat.send", {"text": "talk", "agent": "helper"})
    seen = await client.until(sent["run_id"], lambda evs: "delta" in kinds(evs))
    await client.close()
    back = await connect()
    status = await back.result("chat.subscribe", {"run_id": sent["run_id"], "after_seq": 0})
    assert status == {"run_id": sent["run_id"], "status": "running"}
    assert await back.until(sent["run_id"], lambda evs: len(evs) >= len(seen)) == seen
    gate.set()
    events = await back.finished(sent["run_id"])
    assert_gap_free(events)
    assert text_of(events) == "first of several words" and events[-1]["type"] == "done"
    late = await connect()
    assert (await late.result("chat.subscribe", {"run_id": sent["run_id"], "after_seq": 2}))["status"] == "done"
    assert await late.finished(sent["run_id"]) == events[2:]


async def test_subscribe_to_an_unknown_run_is_not_found(connect):
    client = await connect()
    answer = await client.call("chat.subscribe", {"run_id": "nope"})
    assert answer["error"]["data"]["reason"] == "no_run"


async def test_sessions_can_be_listed_read_and_reset_through_the_gateway(connect):
    await make_agent("helper")
    client = await connect()
    sent = await client.result("chat.send", {"text": "remember me", "agent": "helper", "peer": "dora"})
    await client.finished(sent["run_id"])
    page = await client.result("sessions.list", {"agent": "helper", "q": "remember"})
    assert [s["key"] for s in page["sessions"]] == [sent["session_key"]] and page["total"] == 1
    assert page["sessions"][0]["message_count"] == 2
    reset = await client.result("sessions.reset", {"session_key": sent["session_key"]})
    assert reset["previous_session_id"] == page["sessions"][0]["id"]
    fresh = await client.result("sessions.history", {"session_key": sent["session_key"]})
    assert fresh["messages"] == []
    old = await client.result("sessions.history", {"session_key": reset["previous_session_id"]})
    assert [m["role"] for m in old["messages"]] == ["user", "assistant"]
    reader = await connect(scopes=("sessions:read",))
    answer = await reader.call("sessions.reset", {"session_key": sent["session_key"]})
    assert answer["error"]["data"]["reason"] == "missing_scope"
    answer = await reader.call("sessions.history", {"session_key": "agent:nobody:-:-:-"})
    assert answer["error"]["data"]["reason"] == "no_session"


async def test_aborting_a_queued_run_ends_it_without_starting_it(connect, fake_anthropic, gate, settings):
    settings.ANTHROPIC_API_KEY = "sk-test"
    await anthropic_agent(fake_anthropic, busy_policy="queue")
    fake_anthropic.enqueue(held_answer("first answer", gate), anthropic_server.message(Text("third answer")))
    client = await connect()
    first = await client.result("chat.send", {"text": "one", "agent": "helper"})
    await client.until(first["run_id"], lambda evs: "delta" in kinds(evs))
    second = await client.result("chat.send", {"text": "two", "agent": "helper"})
    assert second["queued"] is True
    assert (await client.result("chat.abort", {"run_id": second["run_id"]}))["aborted"] is True
    events = await client.finished(second["run_id"])
    assert kinds(events) == ["done"] and events[0]["stop_reason"] == "aborted"
    assert (await client.result("chat.subscribe", {"run_id": second["run_id"]}))["status"] == "aborted"
    gate.set()
    await client.finished(first["run_id"])
    third = await client.result("chat.send", {"text": "three", "agent": "helper"})
    assert text_of(await client.finished(third["run_id"])) == "third answer"
    assert len(fake_anthropic.requests) == 2, "the aborted run must never reach the LLM"
    run = await get_store().get_run(second["run_id"])
    assert (run["status"], run["stop_reason"]) == ("aborted", "aborted")


async def test_a_run_left_unfinished_by_a_process_that_died_ends_as_worker_lost_for_whoever_asks(connect, monkeypatch):
    # What a gateway that died mid-run leaves behind: the run recorded as running in the store, and
    # no board that knows it (the new process's in-memory board starts empty).
    from agents.runtime import service

    monkeypatch.setattr(service, "MAX_WAIT_SECONDS", 0.2)
    await make_agent("helper")
    store = get_store()
    # As chat.send records it for token:gone-client (its namespace, its key, its ownership).
    key = "agent:helper:-:token%3Agone-client:gone"
    session, run = await store.start_run(key, "helper", "token:gone-client|key-gone", account="token:gone-client",
                                         peer="gone", owner="token:gone-client")
    await store.update_run(run["id"], status="running")
    token = await make_token(("chat",), name="gone-client")
    client = await connect(token=token)
    status = await client.result("chat.subscribe", {"run_id": run["id"], "after_seq": 3})
    assert status == {"run_id": run["id"], "status": "running"}
    [ending] = await client.finished(run["id"])
    assert ending["type"] == "error" and ending["reason"] == "worker_lost" and ending["seq"] == 4
    assert ending["session_key"] == key
    stored = await store.get_run(run["id"])
    assert stored["status"] == "error" and stored["error"].startswith("worker_lost: ")
    history = await client.result("sessions.history", {"session_key": key})
    assert [m["interrupted"] for m in history["messages"]] == [f"error: {stored['error']}"]
    # Retrying the message with its idempotency key gets the same run and its ending, not a silence.
    other = await connect(token=token)
    again = await other.result("chat.send", {"text": "hello?", "agent": "helper", "peer": "gone",
                                             "idempotency_key": "key-gone"})
    assert again["run_id"] == run["id"]
    [repeat] = await other.finished(run["id"])
    assert {k: repeat[k] for k in ("type", "reason", "seq")} == {"type": "error", "reason": "worker_lost", "seq": 1}


async def test_a_run_the_board_has_forgotten_gets_its_recorded_ending(connect):
    await make_agent("helper")
    store = get_store()
    session, run = await store.start_run("agent:helper:-:-:old", "helper")
    await store.update_run(run["id"], status="done", stop_reason="end_turn", usage={"input_tokens": 4, "output_tokens": 2})
    client = await connect()
    assert (await client.result("chat.subscribe", {"run_id": run["id"]}))["status"] == "done"
    [ending] = await client.finished(run["id"], timeout=2)
    assert ending["type"] == "done" and ending["stop_reason"] == "end_turn" and ending["seq"] == 1
    assert ending["usage"] == {"input_tokens": 4, "output_tokens": 2}


async def test_a_run_admitted_while_a_follower_waits_is_followed_not_declared_lost(connect, monkeypatch):
    # A repeated chat.send can reach the store's run before its first call has put it on the board:
    # the follower must give the board a moment before it calls the run lost.
    from agents.runtime import service
    from agents.runtime.board import get_board, publish

    monkeypatch.setattr(service, "MAX_WAIT_SECONDS", 3.0)
    await make_agent("helper")
    store = get_store()
    session, run = await store.start_run("agent:helper:-:-:late", "helper")
    client = await connect()
    assert (await client.result("chat.subscribe", {"run_id": run["id"]}))["status"] == "queued"
    payload = {"run_id": run["id"], "session_id": session["id"], "session_key": "agent:helper:-:-:late",
               "agent": "helper", "text": "hi", "accepted_at": 0}
    await get_board().admit(payload, "queue", 30)
    await publish(run["id"], {"type": "delta", "text": "on the board"})
    await publish(run["id"], {"type": "done", "stop_reason": "end_turn", "usage": {}, "timings": {}}, terminal="done")
    events = await client.finished(run["id"])
    assert [(e["type"], e["seq"]) for e in events] == [("delta", 1), ("done", 2)]
    assert (await store.get_run(run["id"]))["status"] == "queued", "not recorded as lost"


async def test_another_principals_run_answers_not_found_to_subscribe_and_abort(connect):
    await spin_plugin()
    await make_agent("helper", tools=["spin"])
    owner = await connect(scopes=("chat",))
    sent = await owner.result("chat.send", {"text": "/tool spin.spin {}", "agent": "helper"})
    await owner.until(sent["run_id"], lambda evs: "tool_call" in kinds(evs))
    stranger = await connect(scopes=("chat",))
    for method in ("chat.subscribe", "chat.abort"):
        answer = await stranger.call(method, {"run_id": sent["run_id"]})
        assert (answer["error"]["code"], answer["error"]["data"]["reason"]) == (-32004, "no_run"), method
    assert stranger.events.get(sent["run_id"]) is None, "nothing of the run reached the stranger"
    assert await owner.result("chat.abort", {"run_id": sent["run_id"]}) == {"run_id": sent["run_id"], "aborted": True}
    assert (await owner.finished(sent["run_id"]))[-1]["stop_reason"] == "aborted"


async def test_following_a_run_again_neither_frees_its_slot_nor_takes_another(connect, settings):
    settings.GATEWAY_MAX_RUNS = 2
    await spin_plugin()
    await make_agent("helper", tools=["spin"])
    client = await connect()
    runs = [await client.result("chat.send", {"text": "/tool spin.spin {}", "agent": "helper", "peer": f"p{i}"})
            for i in range(2)]
    for run in runs:
        await client.until(run["run_id"], lambda evs: "tool_call" in kinds(evs))
        await client.result("chat.subscribe", {"run_id": run["run_id"]})
    answer = await client.call("chat.send", {"text": "one more", "agent": "helper", "peer": "p9"})
    assert answer["error"]["data"]["reason"] == "too_many_runs"
    assert (await client.result("status"))["active_runs"] == 2
    for run in runs:
        await client.result("chat.abort", {"run_id": run["run_id"]})
        await client.finished(run["run_id"])
    assert (await client.result("status"))["active_runs"] == 0


@pytest.mark.parametrize("method,params,param", [
    ("chat.send", {"text": "hi \ud800 there", "agent": "helper"}, "text"),
    ("chat.send", {"text": "hi", "agent": "helper", "peer": "\udfff"}, "peer"),
    ("sessions.list", {"q": "\ud83d"}, "q"),
])
async def test_a_lone_surrogate_is_a_clear_params_error_with_no_traceback(connect, caplog, method, params, param):
    await make_agent("helper")
    client = await connect()
    answer = await client.call(method, params)
    assert (answer["error"]["code"], answer["error"]["data"]["param"]) == (-32602, param)
    assert "lone surrogate" in answer["error"]["message"]
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "a traceback was logged"


async def test_sending_a_runs_idempotency_key_again_on_one_connection_holds_one_slot(connect, settings):
    settings.GATEWAY_MAX_RUNS = 2
    await spin_plugin()
    await make_agent("helper", tools=["spin"])
    client = await connect()
    params = {"text": "/tool spin.spin {}", "agent": "helper", "idempotency_key": "once"}
    first = await client.result("chat.send", params)
    assert (await client.result("chat.send", params))["run_id"] == first["run_id"]
    assert (await client.result("status"))["active_runs"] == 1, "one run, one slot"
    await client.result("chat.abort", {"run_id": first["run_id"]})
    await client.finished(first["run_id"])
    assert (await client.result("status"))["active_runs"] == 0
    # Both slots are free again: two runs at once.
    both = [await client.result("chat.send", {"text": "/tool spin.spin {}", "agent": "helper", "peer": peer})
            for peer in ("a", "b")]
    for sent in both:
        await client.result("chat.abort", {"run_id": sent["run_id"]})
        await client.finished(sent["run_id"])
