"""The echo provider's `/tool PLUGIN {json}` shorthand, which the chat clients' demo relies on."""

import pytest

from agents.providers.base import LLMRequest, ToolCallEnd, ToolCallStart, ToolSpec
from agents.providers.echo import EchoProvider

CALC = ToolSpec("calc.calc", "Evaluate arithmetic.", {"type": "object"})
MATH_ADD = ToolSpec("math.add", "Add.", {"type": "object"})
MATH_MUL = ToolSpec("math.mul", "Multiply.", {"type": "object"})


def user(text):
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def called(text, tools):
    events = [e async for e in EchoProvider().stream(LLMRequest(model="", messages=[user(text)], tools=tools))]
    return [e.name for e in events if isinstance(e, (ToolCallStart, ToolCallEnd))]


@pytest.mark.asyncio
async def test_a_plugin_name_alone_calls_its_only_tool():
    assert await called('/tool calc {"expr": "6*7"}', (CALC, MATH_ADD, MATH_MUL)) == ["calc.calc", "calc.calc"]


@pytest.mark.asyncio
async def test_a_plugin_name_with_several_tools_is_not_guessed():
    assert await called("/tool math {}", (CALC, MATH_ADD, MATH_MUL)) == ["math", "math"]
