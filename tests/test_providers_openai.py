import pytest

from agents.providers.base import (
    ToolNameMap, Error, LLMRequest, Stop, TextDelta, ToolCallDelta, ToolCallEnd, ToolCallStart, ToolSpec, Usage,
)
from agents.providers.openai import OpenAIProvider, request_body
from tests.fakes.http import Drop, Reply, Stream, Text, ToolUse
from tests.fakes.openai_server import (
    DONE, chunk, chunks, completion, data, error_body, rate_limited, server_error, tool_round_trip,
)

pytestmark = pytest.mark.asyncio

CALC = ToolSpec("calc.add", "Add two numbers.", {"type": "object", "properties": {"a": {"type": "number"}}})


def ask(text="Hi", **kwargs) -> LLMRequest:
    return LLMRequest(model="gpt-test", messages=[{"role": "user", "content": [{"type": "text", "text": text}]}],
                      timeout=5, **kwargs)


async def collect(provider, request):
    return [event async for event in provider.stream(request)]


@pytest.fixture
def provider(fake_openai, fast_retry):
    return OpenAIProvider(fake_openai.base_url, "sk-test", retry=fast_retry)


async def test_text_is_streamed_word_by_word(provider, fake_openai):
    fake_openai.enqueue(completion(Text("Hello there world")))
    assert await collect(provider, ask()) == [
        TextDelta("Hello "), TextDelta("there "), TextDelta("world"), Usage(12, 3), Stop("end_turn", "stop"),
    ]


async def test_request_carries_system_tools_tool_calls_and_tool_messages(provider, fake_openai):
    fake_openai.enqueue(completion(Text("done")))
    history = [
        {"role": "user", "content": [{"type": "text", "text": "add 1 and 2"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Adding."},
            {"type": "tool_use", "id": "call_1", "name": "calc.add", "input": {"a": 1, "b": 2}},
            {"type": "tool_use", "id": "call_2", "name": "calc.add", "input": {"a": "x"}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "call_1", "content": "3", "is_error": False},
            {"type": "tool_result", "tool_use_id": "call_2", "content": "a is not a number", "is_error": True},
            {"type": "text", "text": "and then?"},
        ]},
    ]
    request = LLMRequest(model="gpt-test", system="Be brief.", messages=history, tools=(CALC,),
                         max_tokens=77, temperature=0.2, timeout=5)
    await collect(provider, request)
    [sent] = fake_openai.requests
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer sk-test"
    assert sent.json == {
        "model": "gpt-test",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 77,
        "temperature": 0.2,
        "tools": [{"type": "function", "function": {"name": "calc__add", "description": "Add two numbers.",
                                                    "parameters": CALC.input_schema}}],
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "add 1 and 2"},
            {"role": "assistant", "content": "Adding.", "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "calc__add", "arguments": '{"a": 1, "b": 2}'}},
                {"id": "call_2", "type": "function", "function": {"name": "calc__add", "arguments": '{"a": "x"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": "3"},
            {"role": "tool", "tool_call_id": "call_2", "content": "Error: a is not a number"},
            {"role": "user", "content": "and then?"},
        ],
    }


async def test_assistant_message_with_only_tool_calls_has_null_content(provider, fake_openai):
    fake_openai.enqueue(completion(Text("ok")))
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "go"}]},
        {"role": "assistant", "content": [{"type": "tool_use", "id": "c", "name": "echo", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c", "content": "x"}]},
    ]
    await collect(provider, LLMRequest(model="m", messages=messages))
    sent = fake_openai.requests[0].json["messages"]
    assert sent[1] == {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c", "type": "function", "function": {"name": "echo", "arguments": "{}"}}]}
    assert sent[2:] == [{"role": "tool", "tool_call_id": "c", "content": "x"}]


async def test_official_api_gets_max_completion_tokens(fake_openai):
    body = request_body(ask(), ToolNameMap(), official=True)
    assert body["max_completion_tokens"] == 1024 and "max_tokens" not in body
    assert OpenAIProvider("https://api.openai.com/v1", "k").official
    assert not OpenAIProvider(fake_openai.base_url, "k").official


async def test_tool_call_arguments_split_across_deltas_are_assembled(provider, fake_openai):
    fake_openai.enqueue(completion(Text("Adding."), ToolUse("call_1", "calc__add", ('{"a": ', '1, "b"', ": 2}"))))
    assert await collect(provider, ask(tools=(CALC,))) == [
        TextDelta("Adding."),
        ToolCallStart(0, "call_1", "calc.add"),
        ToolCallDelta(0, '{"a": '),
        ToolCallDelta(0, '1, "b"'),
        ToolCallDelta(0, ": 2}"),
        ToolCallEnd(0, "call_1", "calc.add", {"a": 1, "b": 2}),
        Usage(12, 5),
        Stop("tool_use", "tool_calls"),
    ]


async def test_interleaved_parallel_tool_calls_are_assembled_by_index(provider, fake_openai):
    def call(index, **fields):
        return chunk({"tool_calls": [{"index": index, **fields}]})

    fake_openai.enqueue(Stream([
        chunk({"role": "assistant", "content": None}),
        call(0, id="c0", type="function", function={"name": "calc__add", "arguments": ""}),
        call(1, id="c1", type="function", function={"name": "other", "arguments": '{"x"'}),
        call(0, function={"arguments": '{"a": 1'}),
        call(1, function={"arguments": ": 2}"}),
        call(0, function={"arguments": "}"}),
        chunk({}, "tool_calls"),
        DONE,
    ]))
    result = await collect(provider, ask(tools=(CALC,)))
    assert result == [
        ToolCallStart(0, "c0", "calc.add"),
        ToolCallStart(1, "c1", "other"),
        ToolCallDelta(1, '{"x"'),
        ToolCallDelta(0, '{"a": 1'),
        ToolCallDelta(1, ": 2}"),
        ToolCallDelta(0, "}"),
        ToolCallEnd(0, "c0", "calc.add", {"a": 1}),
        ToolCallEnd(1, "c1", "other", {"x": 2}),
        Stop("tool_use", "tool_calls"),
    ]


async def test_ollama_style_whole_tool_call_without_index_and_stop_reason(provider, fake_openai):
    fake_openai.enqueue(Stream([
        chunk({"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_x", "type": "function", "function": {"name": "calc__add", "arguments": {"a": 5}}}]}),
        chunk({"content": ""}, "stop"),
        DONE,
    ]))
    assert await collect(provider, ask(tools=(CALC,))) == [
        ToolCallStart(0, "call_x", "calc.add"),
        ToolCallDelta(0, '{"a": 5}'),
        ToolCallEnd(0, "call_x", "calc.add", {"a": 5}),
        Stop("tool_use", "stop"),
    ]


async def test_tool_call_without_id_gets_a_stable_one(provider, fake_openai):
    fake_openai.enqueue(Stream([
        chunk({"tool_calls": [{"index": 0, "function": {"name": "echo", "arguments": "{}"}}]}),
        chunk({}, "tool_calls"), DONE,
    ]))
    result = await collect(provider, ask())
    assert result[0] == ToolCallStart(0, "call_0", "echo")
    assert result[-2] == ToolCallEnd(0, "call_0", "echo", {})


async def test_invalid_tool_json_ends_the_call_with_an_error(provider, fake_openai):
    fake_openai.enqueue(completion(ToolUse("c", "calc__add", ('{"a": ', "oops"))))
    result = await collect(provider, ask(tools=(CALC,)))
    [end] = [e for e in result if isinstance(e, ToolCallEnd)]
    assert end.arguments == {} and "not valid JSON" in end.error


async def test_server_without_usage_chunk_gives_no_usage_event(provider, fake_openai):
    fake_openai.enqueue(completion(Text("hi there"), usage=None))
    assert await collect(provider, ask()) == [TextDelta("hi "), TextDelta("there"), Stop("end_turn", "stop")]


async def test_missing_done_after_finish_reason_is_still_complete(provider, fake_openai):
    fake_openai.enqueue(completion(Text("hi"), done=False))
    assert await collect(provider, ask()) == [TextDelta("hi"), Usage(12, 1), Stop("end_turn", "stop")]


async def test_length_finish_reason_is_max_tokens(provider, fake_openai):
    fake_openai.enqueue(completion(Text("cut"), finish_reason="length"))
    assert (await collect(provider, ask()))[-1] == Stop("max_tokens", "length")


async def test_comments_and_blank_events_between_chunks_change_nothing(provider, fake_openai):
    noisy = []
    for c in chunks(Text("a b")):
        noisy += [c, b": OPENROUTER PROCESSING\n\n", b"\n"]
    fake_openai.enqueue(Stream(noisy))
    assert await collect(provider, ask()) == [TextDelta("a "), TextDelta("b"), Usage(12, 2), Stop("end_turn", "stop")]


async def test_429_with_retry_after_is_retried_after_that_wait(provider, fake_openai, retry_sleep):
    fake_openai.enqueue(rate_limited(retry_after="1.5"), completion(Text("ok")))
    assert await collect(provider, ask()) == [TextDelta("ok"), Usage(12, 1), Stop("end_turn", "stop")]
    assert retry_sleep.delays == [1.5]
    assert len(fake_openai.requests) == 2


async def test_retry_after_ms_takes_precedence(provider, fake_openai, retry_sleep):
    limited = rate_limited(retry_after="9")
    limited.headers["retry-after-ms"] = "250"
    fake_openai.enqueue(limited, completion(Text("ok")))
    await collect(provider, ask())
    assert retry_sleep.delays == [0.25]


async def test_5xx_is_retried_then_reported(provider, fake_openai):
    fake_openai.enqueue(server_error(503), server_error(500), server_error(502))
    assert await collect(provider, ask()) == [Error(
        "server_error", "HTTP 502: The server is overloaded or not ready yet. (gave up after 3 attempts)",
        retryable=True, status=502)]


async def test_connection_dropped_mid_stream_keeps_what_arrived_then_errors(provider, fake_openai):
    fake_openai.enqueue(Stream(chunks(Text("one two three"))[:3], drop=True), completion(Text("never")))
    result = await collect(provider, ask())
    assert result[:2] == [TextDelta("one "), TextDelta("two ")]
    assert result[2].kind == "connection" and "interrupted" in result[2].message and len(result) == 3
    assert len(fake_openai.requests) == 1


async def test_clean_end_before_finish_reason_is_an_interruption(provider, fake_openai):
    fake_openai.enqueue(Stream(chunks(Text("one two"))[:2]))
    result = await collect(provider, ask())
    assert result[0] == TextDelta("one ")
    assert result[1].kind == "connection" and "interrupted before the end of the message" in result[1].message


async def test_connection_closed_before_an_answer_is_retried(provider, fake_openai):
    fake_openai.enqueue(Drop(), completion(Text("ok")))
    assert await collect(provider, ask()) == [TextDelta("ok"), Usage(12, 1), Stop("end_turn", "stop")]


async def test_error_chunk_mid_stream_is_an_error_event(provider, fake_openai):
    fake_openai.enqueue(Stream(chunks(Text("one two"))[:2] + [data(error_body("server_error", "model crashed"))]))
    assert await collect(provider, ask()) == [TextDelta("one "), Error("server_error", "server_error: model crashed")]


async def test_malformed_chunk_is_a_bad_response(provider, fake_openai):
    fake_openai.enqueue(Stream(chunks(Text("a b"))[:2] + [b"data: {\"choices\": [\n\n"]))
    result = await collect(provider, ask())
    assert result == [TextDelta("a "), Error("bad_response", "malformed JSON in 'message' event: '{\"choices\": ['")]


async def test_chunk_of_the_wrong_shape_is_a_bad_response(provider, fake_openai):
    fake_openai.enqueue(Stream([b'data: {"choices": [{"delta": "text"}]}\n\n']))
    [error] = await collect(provider, ask())
    assert error.kind == "bad_response" and "unexpected chunk" in error.message


async def test_html_error_page_is_a_bad_response(provider, fake_openai):
    fake_openai.enqueue(Reply(200, "<html>proxy login</html>", {"content-type": "text/html"}))
    [error] = await collect(provider, ask())
    assert error.kind == "bad_response" and "got text/html: <html>proxy login</html>" in error.message


async def test_unknown_model_is_not_found(provider, fake_openai):
    fake_openai.enqueue(Reply(404, error_body("invalid_request_error", "The model `nope` does not exist",
                                              "model_not_found")))
    assert await collect(provider, ask()) == [
        Error("not_found", "HTTP 404: The model `nope` does not exist", status=404)
    ]


async def test_compatible_server_without_key_gets_no_authorization_header(fake_openai, fast_retry):
    fake_openai.enqueue(completion(Text("ok"), usage=None))
    provider = OpenAIProvider(fake_openai.base_url, "", retry=fast_retry)
    assert await collect(provider, ask()) == [TextDelta("ok"), Stop("end_turn", "stop")]
    assert "authorization" not in fake_openai.requests[0].headers


async def test_official_api_without_key_is_an_auth_error():
    [error] = await collect(OpenAIProvider("https://api.openai.com/v1", "", key_env="TEAM_KEY"), ask())
    assert error == Error("auth", "no OpenAI API key: set the environment variable TEAM_KEY")


async def test_tool_round_trip_responder_serves_both_turns(provider, fake_openai):
    fake_openai.responder = tool_round_trip("calc__add", {"a": 1})
    first = await collect(provider, ask(tools=(CALC,)))
    [end] = [e for e in first if isinstance(e, ToolCallEnd)]
    assert end.name == "calc.add" and end.arguments == {"a": 1}
    messages = ask().messages + [
        {"role": "assistant", "content": [{"type": "tool_use", "id": end.id, "name": end.name, "input": end.arguments}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": end.id, "content": "42"}]},
    ]
    second = await collect(provider, LLMRequest(model="m", messages=messages, tools=(CALC,)))
    assert "".join(e.text for e in second if isinstance(e, TextDelta)) == "The tool said: 42"
    assert fake_openai.requests[1].json["messages"][-1] == {"role": "tool", "tool_call_id": end.id, "content": "42"}


async def test_closing_the_stream_closes_the_connection_at_once(provider, fake_openai):
    fake_openai.enqueue(Stream(chunks(Text("one two three")), pause_after=2))
    stream = provider.stream(ask())
    assert await anext(stream) == TextDelta("one ")
    await stream.aclose()
    assert fake_openai.requests[0].disconnected.wait(5), "the server never saw the client go away"


async def test_a_gated_stream_continues_when_the_test_opens_the_gate(provider, fake_openai):
    import threading

    gate = threading.Event()
    fake_openai.enqueue(Stream(chunks(Text("one two")), pause_after=2, gate=gate))
    stream = provider.stream(ask())
    assert await anext(stream) == TextDelta("one ")
    gate.set()
    assert [e async for e in stream] == [TextDelta("two"), Usage(12, 2), Stop("end_turn", "stop")]


async def test_twenty_concurrent_streams_each_get_their_own_answer(provider, fake_openai):
    import asyncio

    from tests.fakes.http import Recorded

    def respond(request: Recorded):
        asked = request.json["messages"][-1]["content"]
        return completion(Text(f"answer to {asked}"))

    fake_openai.responder = respond

    async def one(n):
        return "".join(e.text for e in await collect(provider, ask(f"q{n}")) if isinstance(e, TextDelta))

    answers = await asyncio.gather(*(one(n) for n in range(20)))
    assert answers == [f"answer to q{n}" for n in range(20)]
