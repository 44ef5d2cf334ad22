"""Full round trips through the real Anthropic and OpenAI providers against fake servers on loopback:
the fake LLM calls the real `echo` plugin, and what it gets back is asserted on the wire."""

import pytest

from agents.store import get_store
from tests.fakes import anthropic_server, openai_server
from tests.fakes.http import Stream, Text, ToolUse, last_tool_result
from tests.runtime_fixtures import assert_gap_free, echo_plugin, make_agent, spin_plugin, text_of

pytestmark = [
    pytest.mark.asyncio,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("fresh_layer", "process_store", "fast_llm_retries"),
]

WIRES = {"anthropic": anthropic_server, "openai": openai_server}


@pytest.fixture(params=["anthropic", "openai"])
def llm(request, monkeypatch):
    """(provider name, its fake server, the fake's module)."""
    monkeypatch.setenv("EXO_TEST_LLM_KEY", "sk-test")
    server = request.getfixturevalue(f"fake_{request.param}")
    return request.param, server, WIRES[request.param]


async def llm_agent(llm, **fields):
    provider, server, _ = llm
    return await make_agent(
        "helper", provider=provider, model="test-model", base_url=server.base_url, api_key_env="EXO_TEST_LLM_KEY", **fields
    )


def offered_tools(provider: str, body: dict) -> list[str]:
    if provider == "anthropic":
        return [t["name"] for t in body["tools"]]
    return [t["function"]["name"] for t in body["tools"]]


async def test_the_llm_calls_the_echo_plugin_and_gets_its_output_back(connect, llm):
    provider, server, wire = llm
    await echo_plugin()
    await llm_agent(llm, tools=["echo"])
    server.responder = wire.tool_round_trip("echo__echo", {"text": "sandboxed hello"})
    client = await connect()
    sent = await client.result("chat.send", {"text": "please echo", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert_gap_free(events)
    assert [e["type"] for e in events if e["type"] != "delta"] == ["tool_call", "tool_result", "done"]
    call, result = events[0], events[1]
    assert (call["name"], call["input"]) == ("echo.echo", {"text": "sandboxed hello"})
    assert (result["content"], result["is_error"]) == ("sandboxed hello", False)
    assert text_of(events) == "The tool said: sandboxed hello"
    assert events[-1]["stop_reason"] == "end_turn" and events[-1]["usage"]["input_tokens"] > 0

    first, second = server.wait_for_requests(2)
    assert offered_tools(provider, first.json) == ["echo__echo"]
    assert last_tool_result(first.json) is None
    assert last_tool_result(second.json)["content"] == "sandboxed hello"
    assert second.headers.get("x-api-key", second.headers.get("authorization", "")).endswith("sk-test")

    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert [m["role"] for m in history] == ["user", "assistant", "user", "assistant"]
    assert history[-1]["content"] == [{"type": "text", "text": "The tool said: sandboxed hello"}]


async def test_a_runaway_tool_loop_stops_at_max_tool_rounds(connect, llm):
    provider, server, wire = llm
    await echo_plugin()
    await llm_agent(llm, tools=["echo"], max_tool_rounds=2)

    def always_a_tool_call(request):
        call = ToolUse.split(f"call_{len(server.requests)}", "echo__echo", {"text": "again"})
        if provider == "anthropic":
            return anthropic_server.message(call, stop_reason="tool_use")
        return openai_server.completion(call)

    server.responder = always_a_tool_call
    client = await connect()
    sent = await client.result("chat.send", {"text": "loop forever", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert events[-1]["stop_reason"] == "max_tool_rounds"
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["error_kind"] for r in results] == [None, None, "max_tool_rounds"]
    assert len(server.requests) == 3


async def test_an_llm_that_stays_overloaded_ends_the_run_with_a_clear_error(connect, llm):
    provider, server, wire = llm
    await llm_agent(llm)
    failure = anthropic_server.overloaded() if provider == "anthropic" else openai_server.server_error(503)
    server.enqueue(failure, failure, failure)
    client = await connect()
    sent = await client.result("chat.send", {"text": "hello?", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert [e["type"] for e in events] == ["error"]
    assert events[0]["reason"] == ("overloaded" if provider == "anthropic" else "server_error")
    run = await get_store().get_run(sent["run_id"])
    assert run["status"] == "error" and run["error"].startswith(events[0]["reason"])


async def test_a_stream_cut_mid_answer_keeps_the_partial_text_marked(connect, llm):
    provider, server, wire = llm
    await llm_agent(llm)
    chunks = (anthropic_server.events if provider == "anthropic" else openai_server.chunks)(Text("one two three four"))
    server.enqueue(Stream(chunks[:4], drop=True))
    client = await connect()
    sent = await client.result("chat.send", {"text": "count", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert events[-1]["type"] == "error" and events[-1]["reason"] == "connection"
    partial = text_of(events)
    assert partial and "one two three four".startswith(partial)
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert history[-1]["role"] == "assistant" and history[-1]["interrupted"] == "error"
    assert history[-1]["content"] == [{"type": "text", "text": partial}]


async def test_the_tool_calls_of_one_turn_run_concurrently(connect, fake_anthropic, monkeypatch):
    monkeypatch.setenv("EXO_TEST_LLM_KEY", "sk-test")
    await echo_plugin()
    await spin_plugin(timeout_ms=1000)
    await llm_agent(("anthropic", fake_anthropic, anthropic_server), tools=["echo", "spin"])
    fake_anthropic.enqueue(
        anthropic_server.message(ToolUse.split("toolu_slow", "spin__spin", {}),
                                 ToolUse.split("toolu_fast", "echo__echo", {"text": "fast"}), stop_reason="tool_use"),
        anthropic_server.message(Text("both done")),
    )
    client = await connect()
    sent = await client.result("chat.send", {"text": "two at once", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    results = [(e["call_id"], e["error_kind"]) for e in events if e["type"] == "tool_result"]
    # Run one after the other, the fast call would wait for the slow one's 1 s timeout.
    assert results == [("toolu_fast", None), ("toolu_slow", "timeout")]
    second = fake_anthropic.wait_for_requests(2)[1].json
    assert [b["tool_use_id"] for b in second["messages"][-1]["content"]] == ["toolu_slow", "toolu_fast"]
    assert text_of(events) == "both done"


async def test_tool_arguments_that_are_not_json_are_answered_with_an_error_the_llm_can_fix(connect, fake_anthropic, monkeypatch):
    monkeypatch.setenv("EXO_TEST_LLM_KEY", "sk-test")
    await echo_plugin()
    await llm_agent(("anthropic", fake_anthropic, anthropic_server), tools=["echo"])
    fake_anthropic.enqueue(
        anthropic_server.message(ToolUse("toolu_bad", "echo__echo", ('{"text": ', '"unfinished')), stop_reason="tool_use"),
        anthropic_server.message(Text("sorry")),
    )
    client = await connect()
    sent = await client.result("chat.send", {"text": "go", "agent": "helper"})
    events = await client.finished(sent["run_id"])
    result = next(e for e in events if e["type"] == "tool_result")
    assert (result["is_error"], result["error_kind"]) == (True, "bad_input")
    fed_back = fake_anthropic.wait_for_requests(2)[1].json["messages"][-1]["content"][0]
    assert fed_back["is_error"] is True and "not valid JSON" in fed_back["content"]
    assert text_of(events) == "sorry"
