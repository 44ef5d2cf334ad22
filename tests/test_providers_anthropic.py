import json

import pytest

from agents.providers.anthropic import AnthropicProvider
from agents.providers.base import (
    Error, LLMRequest, Stop, TextDelta, ToolCallDelta, ToolCallEnd, ToolCallStart, ToolSpec, Usage,
)
from agents.providers.transport import RetryPolicy
from tests.fakes.anthropic_server import (
    PING, error_event, events, message, overloaded, rate_limited, sse,
)
from tests.fakes.http import Drop, Reply, Stream, Text, ToolUse

pytestmark = pytest.mark.asyncio

CALC = ToolSpec("calc.add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"}}})


def ask(text="Hi", **kwargs) -> LLMRequest:
    return LLMRequest(model="claude-test", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}],
                      timeout=5, **kwargs)


async def collect(provider, request):
    return [event async for event in provider.stream(request)]


@pytest.fixture
def provider(fake_anthropic, fast_retry):
    return AnthropicProvider(fake_anthropic.base_url, "sk-ant-test", retry=fast_retry)


async def test_text_is_streamed_word_by_word(provider, fake_anthropic):
    fake_anthropic.enqueue(message(Text("Hello there world")))
    assert await collect(provider, ask()) == [
        TextDelta("Hello "), TextDelta("there "), TextDelta("world"), Usage(12, 3), Stop("end_turn", "end_turn"),
    ]


async def test_request_carries_headers_system_tools_and_history(provider, fake_anthropic):
    fake_anthropic.enqueue(message(Text("done")))
    history = [
        {"role": "user", "content": [{"type": "text", "text": "add 1 and 2"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Adding."},
            {"type": "tool_use", "id": "toolu_1", "name": "calc.add", "input": {"a": 1, "b": 2}},
            {"type": "tool_use", "id": "toolu_2", "name": "calc.add", "input": {"a": "x"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3", "is_error": False},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "a is not a number", "is_error": True},
        ]},
    ]
    request = LLMRequest(model="claude-test", system="Be brief.", messages=history, tools=(CALC,),
                         max_tokens=77, temperature=0.2, timeout=5)
    await collect(provider, request)
    [sent] = fake_anthropic.requests
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    assert sent.headers["x-api-key"] == "sk-ant-test"
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["content-type"] == "application/json"
    assert sent.json == {
        "model": "claude-test",
        "max_tokens": 77,
        "stream": True,
        "system": "Be brief.",
        "temperature": 0.2,
        "tools": [{"name": "calc__add", "description": "Add two numbers.", "input_schema": CALC.input_schema}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "add 1 and 2"}]},
            {"role": "assistant", "content": [
                {"type": "text", "text": "Adding."},
                {"type": "tool_use", "id": "toolu_1", "name": "calc__add", "input": {"a": 1, "b": 2}},
                {"type": "tool_use", "id": "toolu_2", "name": "calc__add", "input": {"a": "x"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "3", "is_error": False},
                {"type": "tool_result", "tool_use_id": "toolu_2", "content": "a is not a number", "is_error": True},
            ]},
        ],
    }


async def test_optional_fields_are_left_out_and_empty_text_blocks_dropped(provider, fake_anthropic):
    fake_anthropic.enqueue(message(Text("ok")))
    request = LLMRequest(model="m", messages=[{"role": "user", "content": [
        {"type": "text", "text": ""}, {"type": "text", "text": "hi", "stored_at": 123}]}], timeout=5)
    await collect(provider, request)
    body = fake_anthropic.requests[0].json
    assert set(body) == {"model", "max_tokens", "stream", "messages"}
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


async def test_tool_call_arguments_split_across_deltas_are_assembled(provider, fake_anthropic):
    fake_anthropic.enqueue(message(Text("Adding."), ToolUse("toolu_1", "calc__add", ('{"a": ', '1, "b"', ": 2}")),
                                   stop_reason="tool_use"))
    assert await collect(provider, ask(tools=(CALC,))) == [
        TextDelta("Adding."),
        ToolCallStart(0, "toolu_1", "calc.add"),
        ToolCallDelta(0, '{"a": '),
        ToolCallDelta(0, '1, "b"'),
        ToolCallDelta(0, ": 2}"),
        ToolCallEnd(0, "toolu_1", "calc.add", {"a": 1, "b": 2}),
        Usage(12, 5),
        Stop("tool_use", "tool_use"),
    ]


async def test_several_tool_calls_are_numbered_in_order(provider, fake_anthropic):
    fake_anthropic.enqueue(message(ToolUse("t1", "calc__add", ('{"a": 1}',)), ToolUse("t2", "other", ()),
                                   stop_reason="tool_use"))
    result = await collect(provider, ask(tools=(CALC,)))
    ends = [e for e in result if isinstance(e, ToolCallEnd)]
    assert ends == [ToolCallEnd(0, "t1", "calc.add", {"a": 1}), ToolCallEnd(1, "t2", "other", {})]


async def test_invalid_tool_json_ends_the_call_with_an_error(provider, fake_anthropic):
    fake_anthropic.enqueue(message(ToolUse("t1", "calc__add", ('{"a": ', "oops")), stop_reason="tool_use"))
    result = await collect(provider, ask(tools=(CALC,)))
    [end] = [e for e in result if isinstance(e, ToolCallEnd)]
    assert end.arguments == {} and "not valid JSON" in end.error
    assert result[-1] == Stop("tool_use", "tool_use")


async def test_pings_and_comments_between_events_change_nothing(provider, fake_anthropic):
    chunks = events(Text("a b"), pings=False)
    noisy = []
    for chunk in chunks:
        noisy += [chunk, PING, b": keep-alive\n\n"]
    fake_anthropic.enqueue(Stream(noisy))
    assert await collect(provider, ask()) == [TextDelta("a "), TextDelta("b"), Usage(12, 2),
                                              Stop("end_turn", "end_turn")]


async def test_events_split_across_network_chunks_are_reassembled(provider, fake_anthropic):
    stream = b"".join(events(Text("split me up")))
    fake_anthropic.enqueue(Stream([stream[i : i + 7] for i in range(0, len(stream), 7)]))
    assert await collect(provider, ask()) == [TextDelta("split "), TextDelta("me "), TextDelta("up"),
                                              Usage(12, 3), Stop("end_turn", "end_turn")]


async def test_429_with_retry_after_is_retried_after_that_wait(provider, fake_anthropic, retry_sleep):
    fake_anthropic.enqueue(rate_limited(retry_after="2"), message(Text("ok")))
    assert await collect(provider, ask()) == [TextDelta("ok"), Usage(12, 1), Stop("end_turn", "end_turn")]
    assert retry_sleep.delays == [2.0]
    assert len(fake_anthropic.requests) == 2
    assert fake_anthropic.requests[0].json == fake_anthropic.requests[1].json


async def test_529_overloaded_is_retried_with_backoff(provider, fake_anthropic, retry_sleep):
    fake_anthropic.enqueue(overloaded(), overloaded(), message(Text("ok")))
    assert await collect(provider, ask()) == [TextDelta("ok"), Usage(12, 1), Stop("end_turn", "end_turn")]
    first, second = retry_sleep.delays
    assert 0.375 <= first <= 0.5 and 0.75 <= second <= 1.0


async def test_persistent_overload_ends_with_a_clear_error(provider, fake_anthropic):
    fake_anthropic.enqueue(overloaded(), overloaded(), overloaded())
    assert await collect(provider, ask()) == [
        Error("overloaded", "HTTP 529: Overloaded (gave up after 3 attempts)", retryable=True, status=529)
    ]
    assert len(fake_anthropic.requests) == 3


async def test_retry_after_beyond_the_cap_is_not_waited_for(provider, fake_anthropic, retry_sleep):
    fake_anthropic.enqueue(rate_limited(retry_after="3600"))
    [error] = await collect(provider, ask())
    assert error.kind == "rate_limited" and error.status == 429 and error.retryable
    assert "retry after 3600 s, more than the 60 s we wait" in error.message
    assert retry_sleep.delays == [] and len(fake_anthropic.requests) == 1


async def test_overloaded_error_event_mid_stream_keeps_the_text_and_is_not_retried(provider, fake_anthropic):
    chunks = events(Text("one two three"))
    fake_anthropic.enqueue(Stream(chunks[:5] + [error_event("overloaded_error", "Overloaded")]))
    assert await collect(provider, ask()) == [
        TextDelta("one "), TextDelta("two "), Error("overloaded", "overloaded_error: Overloaded", retryable=True),
    ]
    assert len(fake_anthropic.requests) == 1


async def test_overloaded_error_event_before_any_content_is_retried(provider, fake_anthropic):
    fake_anthropic.enqueue(Stream(events(Text("x"))[:2] + [error_event()]), message(Text("fine")))
    assert await collect(provider, ask()) == [TextDelta("fine"), Usage(12, 1), Stop("end_turn", "end_turn")]
    assert len(fake_anthropic.requests) == 2


async def test_connection_dropped_mid_stream_keeps_what_arrived_then_errors(provider, fake_anthropic):
    chunks = events(Text("one two three"))
    fake_anthropic.enqueue(Stream(chunks[:5], drop=True), message(Text("never sent")))
    result = await collect(provider, ask())
    assert result[:2] == [TextDelta("one "), TextDelta("two ")]
    assert len(result) == 3
    assert result[2].kind == "connection" and "interrupted" in result[2].message
    assert len(fake_anthropic.requests) == 1


async def test_stream_ending_without_message_stop_is_an_interruption(provider, fake_anthropic):
    fake_anthropic.enqueue(Stream(events(Text("cut"))[:-1]))
    result = await collect(provider, ask())
    assert result[0] == TextDelta("cut")
    assert result[1].kind == "connection" and "interrupted before the end of the message" in result[1].message


async def test_connection_closed_before_an_answer_is_retried(provider, fake_anthropic):
    fake_anthropic.enqueue(Drop(), message(Text("ok")))
    assert await collect(provider, ask()) == [TextDelta("ok"), Usage(12, 1), Stop("end_turn", "end_turn")]


async def test_malformed_json_in_an_event_is_a_bad_response(provider, fake_anthropic):
    chunks = events(Text("a b"))
    fake_anthropic.enqueue(Stream(chunks[:4] + [b"event: content_block_delta\ndata: {not json\n\n"]))
    result = await collect(provider, ask())
    assert result[0] == TextDelta("a ")
    assert result[1] == Error("bad_response", "malformed JSON in 'content_block_delta' event: '{not json'")


async def test_invalid_utf8_in_the_stream_is_a_bad_response(provider, fake_anthropic):
    fake_anthropic.enqueue(Stream([events(Text("a"))[0], b"event: ping\ndata: \xff\n\n"]))
    [error] = await collect(provider, ask())
    assert error.kind == "bad_response" and "not valid UTF-8" in error.message


async def test_event_missing_its_fields_is_a_bad_response(provider, fake_anthropic):
    fake_anthropic.enqueue(Stream([events(Text("a"))[0], sse("content_block_delta", {"type": "content_block_delta"})]))
    [error] = await collect(provider, ask())
    assert error.kind == "bad_response" and "unexpected 'content_block_delta' event" in error.message


async def test_json_answer_instead_of_a_stream_is_a_bad_response(provider, fake_anthropic):
    fake_anthropic.enqueue(Reply(200, {"type": "message", "content": []}))
    [error] = await collect(provider, ask())
    assert error.kind == "bad_response" and "expected an event stream, got application/json" in error.message


async def test_unauthorised_key_is_an_auth_error_without_retry(provider, fake_anthropic):
    fake_anthropic.enqueue(Reply(401, {"type": "error", "error": {"type": "authentication_error",
                                                                  "message": "invalid x-api-key"}}))
    assert await collect(provider, ask()) == [Error("auth", "HTTP 401: invalid x-api-key", status=401)]
    assert len(fake_anthropic.requests) == 1


async def test_bad_request_reports_the_providers_message(provider, fake_anthropic):
    fake_anthropic.enqueue(Reply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                  "message": "max_tokens: too big"}}))
    assert await collect(provider, ask()) == [Error("bad_request", "HTTP 400: max_tokens: too big", status=400)]


async def test_server_can_forbid_a_retry_with_x_should_retry(provider, fake_anthropic):
    fake_anthropic.enqueue(Reply(500, {"type": "error", "error": {"type": "api_error", "message": "boom"}},
                                 {"x-should-retry": "false"}))
    assert await collect(provider, ask()) == [Error("server_error", "HTTP 500: boom", status=500)]


async def test_missing_key_is_an_error_event_and_sends_nothing(fake_anthropic, fast_retry):
    provider = AnthropicProvider(fake_anthropic.base_url, "", key_env="MY_CLAUDE_KEY", retry=fast_retry)
    assert await collect(provider, ask()) == [
        Error("auth", "no Anthropic API key: set the environment variable MY_CLAUDE_KEY")
    ]
    assert fake_anthropic.requests == []


async def test_missing_model_is_a_config_error(provider):
    [error] = await collect(provider, LLMRequest(model="", messages=[]))
    assert error.kind == "config" and "no model" in error.message


async def test_silence_longer_than_the_timeout_is_a_timeout_error(fake_anthropic):
    provider = AnthropicProvider(fake_anthropic.base_url, "k", retry=RetryPolicy(max_retries=0))
    fake_anthropic.enqueue(Stream(events(Text("one two")), pause_after=4))
    request = LLMRequest(model="m", messages=ask().messages, timeout=0.3)
    result = await collect(provider, request)
    assert result[0] == TextDelta("one ")
    assert result[1] == Error("timeout", f"no answer from {provider.url} after 0.3 s (waiting for data)",
                              retryable=True)
    assert fake_anthropic.requests[0].disconnected.wait(5)


async def test_unreachable_server_is_a_connection_error_after_retries(fast_retry, retry_sleep):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    provider = AnthropicProvider(f"http://127.0.0.1:{port}", "k", retry=fast_retry)
    [error] = await collect(provider, ask())
    assert error.kind == "connection" and error.retryable
    assert error.message.startswith(f"cannot connect to http://127.0.0.1:{port}/v1/messages")
    assert error.message.endswith("(gave up after 3 attempts)")
    assert len(retry_sleep.delays) == 2


async def test_bad_base_url_is_a_config_error(fast_retry):
    [error] = await collect(AnthropicProvider("ftp://example.com", "k", retry=fast_retry), ask())
    assert error.kind == "config" and "bad base URL" in error.message


async def test_unsupported_content_block_is_a_bad_request_before_sending(provider, fake_anthropic):
    request = LLMRequest(model="m", messages=[{"role": "user", "content": [{"type": "image"}]}])
    assert await collect(provider, request) == [
        Error("bad_request", "unsupported content block type 'image' in the conversation")
    ]
    assert fake_anthropic.requests == []


async def test_thinking_blocks_and_unknown_events_are_ignored(provider, fake_anthropic):
    chunks = events(Text("hi"))
    extra = [
        sse("content_block_start", {"type": "content_block_start", "index": 5,
                                    "content_block": {"type": "thinking", "thinking": ""}}),
        sse("content_block_delta", {"type": "content_block_delta", "index": 5,
                                    "delta": {"type": "thinking_delta", "thinking": "hmm"}}),
        sse("content_block_stop", {"type": "content_block_stop", "index": 5}),
        sse("brand_new_event", {"type": "brand_new_event"}),
    ]
    fake_anthropic.enqueue(Stream(chunks[:1] + extra + chunks[1:]))
    assert await collect(provider, ask()) == [TextDelta("hi"), Usage(12, 1), Stop("end_turn", "end_turn")]


async def test_tool_round_trip_responder_serves_both_turns(provider, fake_anthropic):
    from tests.fakes.anthropic_server import tool_round_trip

    fake_anthropic.responder = tool_round_trip("calc__add", {"a": 1})
    first = await collect(provider, ask(tools=(CALC,)))
    [end] = [e for e in first if isinstance(e, ToolCallEnd)]
    assert end.name == "calc.add" and end.arguments == {"a": 1}
    messages = ask().messages + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": end.id, "name": end.name, "input": end.arguments}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": end.id, "content": "42"}]},
    ]
    second = await collect(provider, LLMRequest(model="m", messages=messages, tools=(CALC,)))
    assert "".join(e.text for e in second if isinstance(e, TextDelta)) == "The tool said: 42"
    assert json.loads(fake_anthropic.requests[1].body)["messages"][2]["content"][0]["is_error"] is False


async def test_closing_the_stream_closes_the_connection_at_once(provider, fake_anthropic):
    fake_anthropic.enqueue(Stream(events(Text("one two three")), pause_after=4))
    stream = provider.stream(ask())
    assert await anext(stream) == TextDelta("one ")
    await stream.aclose()
    assert fake_anthropic.requests[0].disconnected.wait(5), "the server never saw the client go away"


async def test_a_permanent_error_after_a_retry_is_reported_as_it_is(provider, fake_anthropic):
    fake_anthropic.enqueue(overloaded(), Reply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                                "message": "bad"}}))
    assert await collect(provider, ask()) == [Error("bad_request", "HTTP 400: bad", status=400)]
