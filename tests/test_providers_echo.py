import pytest

from agents.providers.base import (
    LLMRequest, Stop, TextDelta, ToolCallDelta, ToolCallEnd, ToolCallStart, ToolSpec, Usage,
)
from agents.providers.echo import EchoProvider, words

ECHO_TOOL = ToolSpec("echo.echo", "Echo text.", {"type": "object"})


def user(text):
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def collect(request):
    return [event async for event in EchoProvider().stream(request)]


def test_words_concatenate_back_to_the_text():
    for text in ["hello  world ", "  lead", "one", "", "   ", "tabs\tand\nlines"]:
        assert "".join(words(text)) == text


@pytest.mark.asyncio
async def test_last_user_text_is_streamed_back_word_by_word():
    request = LLMRequest(model="", system="be nice", messages=[user("old words"), user("hello big world")])
    assert await collect(request) == [
        TextDelta("hello "), TextDelta("big "), TextDelta("world"), Usage(7, 3), Stop("end_turn"),
    ]


@pytest.mark.asyncio
async def test_output_is_cut_at_max_tokens_words():
    assert await collect(LLMRequest(model="", messages=[user("a b c d")], max_tokens=2)) == [
        TextDelta("a "), TextDelta("b "), Usage(4, 2), Stop("max_tokens"),
    ]


@pytest.mark.asyncio
async def test_tool_command_calls_the_named_tool_with_its_json():
    request = LLMRequest(model="", messages=[user('/tool echo.echo {"text": "hi there"}')], tools=(ECHO_TOOL,))
    result = await collect(request)
    assert result[0] == ToolCallStart(0, "toolu_echo_1", "echo.echo")
    assert "".join(e.partial_json for e in result if isinstance(e, ToolCallDelta)) == '{"text": "hi there"}'
    assert len([e for e in result if isinstance(e, ToolCallDelta)]) == 3
    assert result[-3:] == [ToolCallEnd(0, "toolu_echo_1", "echo.echo", {"text": "hi there"}), Usage(5, 4),
                           Stop("tool_use")]


@pytest.mark.asyncio
async def test_tool_command_accepts_the_provider_visible_name():
    request = LLMRequest(model="", messages=[user("/tool echo__echo")], tools=(ECHO_TOOL,))
    assert (await collect(request))[0] == ToolCallStart(0, "toolu_echo_1", "echo.echo")


@pytest.mark.asyncio
async def test_tool_command_accepts_a_plugin_name_with_one_offered_tool():
    calc = ToolSpec("calc.calc", "Evaluate.", {"type": "object"})
    request = LLMRequest(model="", messages=[user('/tool calc {"expr": "6*7"}')], tools=(ECHO_TOOL, calc))
    assert (await collect(request))[0] == ToolCallStart(0, "toolu_echo_1", "calc.calc")


@pytest.mark.asyncio
async def test_tool_command_keeps_a_plugin_name_with_several_offered_tools():
    tools = (ToolSpec("math.add", "", {}), ToolSpec("math.mul", "", {}))
    request = LLMRequest(model="", messages=[user("/tool math {}")], tools=tools)
    assert (await collect(request))[0] == ToolCallStart(0, "toolu_echo_1", "math")


@pytest.mark.asyncio
async def test_tool_command_for_a_tool_not_offered_is_still_called():
    result = await collect(LLMRequest(model="", messages=[user("/tool secret.read {}")]))
    assert result[-3] == ToolCallEnd(0, "toolu_echo_1", "secret.read", {})


@pytest.mark.asyncio
async def test_tool_command_with_bad_json_explains_the_syntax():
    result = await collect(LLMRequest(model="", messages=[user("/tool echo.echo {nope")]))
    text = "".join(e.text for e in result if isinstance(e, TextDelta))
    assert text.startswith("echo: that /tool command has no valid JSON object. Use /tool NAME")
    assert result[-1] == Stop("end_turn")


@pytest.mark.asyncio
async def test_tool_results_are_reported_after_the_call():
    messages = [
        user('/tool echo.echo {"text": "x"}'),
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": "toolu_echo_1", "name": "echo.echo", "input": {"text": "x"}},
            {"type": "tool_use", "id": "toolu_echo_2", "name": "calc.add", "input": {}},
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_echo_1", "content": "x", "is_error": False},
            {"type": "tool_result", "tool_use_id": "toolu_echo_2", "content": "tool not allowed", "is_error": True},
        ]},
    ]
    result = await collect(LLMRequest(model="", messages=messages, tools=(ECHO_TOOL,)))
    text = "".join(e.text for e in result if isinstance(e, TextDelta))
    assert text == "Tool echo.echo returned: x\nTool calc.add failed: tool not allowed"
    assert result[-1] == Stop("end_turn")


@pytest.mark.asyncio
async def test_call_ids_follow_the_number_of_calls_in_the_conversation():
    messages = [
        user("/tool a {}"),
        {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_echo_1", "name": "a", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_echo_1", "content": "ok"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Tool a returned: ok"}]},
        user("/tool b {}"),
    ]
    assert (await collect(LLMRequest(model="", messages=messages)))[0] == ToolCallStart(0, "toolu_echo_2", "b")


@pytest.mark.asyncio
async def test_empty_conversation_gives_an_empty_answer():
    assert await collect(LLMRequest(model="", messages=[])) == [Usage(0, 0), Stop("end_turn")]


@pytest.mark.asyncio
async def test_same_request_gives_the_same_events():
    request = LLMRequest(model="", messages=[user('/tool echo.echo {"text": "same"}')])
    assert await collect(request) == await collect(request)
