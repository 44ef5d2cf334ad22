"""The offline provider: no network, deterministic, enough to drive the whole tool loop.

- It streams the last user message's text back, one word (with the whitespace after it) per
  `TextDelta`, cut at `max_tokens` words (then the stop reason is `max_tokens`).
- A user message `/tool NAME {json}` makes it call tool NAME with that JSON object (no JSON:
  `{}`). NAME is exoclaw's name (`plugin.tool`); the provider-visible form (`plugin__tool`) is
  accepted too, and so is a bare plugin name when the agent is offered exactly one tool of that
  plugin (`/tool calc {"expr": "6*7"}` calls `calc.calc`). The call is streamed as a real provider would (start, arguments in fragments,
  end) with stop reason `tool_use`, and the events carry exoclaw's name. A name the agent does
  not offer is still called, so the tool loop's allowlist check can be exercised.
- When the conversation ends with tool results, it reports them:
  `Tool calc.add returned: 3` or `Tool calc.add failed: <error>`, one line per result.
- Usage: input tokens are the words of the system prompt and every text and tool result in the
  conversation; output tokens are the deltas sent.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator

from common import metrics

from .base import (
    Event,
    LLMRequest,
    Stop,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolNameMap,
    Usage,
    text_of,
)

TOOL_COMMAND = re.compile(r"^\s*/tool\s+(?P<name>\S+)\s*(?P<args>.*?)\s*$", re.DOTALL)
USAGE_HINT = 'Use /tool NAME {"key": "value"}, for example /tool echo.echo {"text": "hi"}'
_WORD = re.compile(r"\s*\S+\s*")


def words(text: str) -> list[str]:
    """Pieces that concatenate back to `text` exactly: each word with the whitespace around it."""
    return _WORD.findall(text) or ([text] if text else [])


def _count_words(request: LLMRequest) -> int:
    count = len(request.system.split())
    for message in request.messages:
        for block in message["content"]:
            if block.get("type") == "text":
                count += len(block["text"].split())
            elif block.get("type") == "tool_result":
                count += len(str(block["content"]).split())
    return count


def _tool_names(request: LLMRequest) -> dict[str, str]:
    """Internal names of the offered tools, keyed by both their internal and provider-visible forms."""
    names = ToolNameMap.for_request(request)
    offered = {t.name: t.name for t in request.tools}
    offered.update({names.wire(t.name): t.name for t in request.tools})
    by_plugin: dict[str, list[str]] = {}
    for t in request.tools:
        by_plugin.setdefault(t.name.partition(".")[0], []).append(t.name)
    for plugin, tools in by_plugin.items():
        if len(tools) == 1:
            offered.setdefault(plugin, tools[0])
    return offered


def _tool_call_id(request: LLMRequest) -> str:
    calls = sum(1 for m in request.messages for b in m["content"] if b.get("type") == "tool_use")
    return f"toolu_echo_{calls + 1}"


class EchoProvider:
    async def stream(self, request: LLMRequest) -> AsyncIterator[Event]:
        metrics.LLM_REQUESTS.labels(provider="echo", status="ok").inc()
        input_tokens = _count_words(request)
        last = request.messages[-1] if request.messages else {"role": "user", "content": []}
        results = [b for b in last["content"] if b.get("type") == "tool_result"]
        calls = {
            b["id"]: b["name"]
            for m in request.messages
            for b in m["content"]
            if b.get("type") == "tool_use"
        }
        if last["role"] == "user" and results:
            lines = []
            for result in results:
                name = calls.get(result["tool_use_id"], result["tool_use_id"])
                verb = "failed" if result.get("is_error") else "returned"
                lines.append(f"Tool {name} {verb}: {result['content']}")
            text = "\n".join(lines)
        else:
            text = text_of(last) if last["role"] == "user" else ""
            command = TOOL_COMMAND.match(text)
            if command:
                call = self._tool_call(request, command["name"], command["args"], input_tokens)
                if call is not None:
                    async for event in call:
                        yield event
                    return
                text = f"echo: that /tool command has no valid JSON object. {USAGE_HINT}"
        sent = 0
        for piece in words(text):
            if sent == request.max_tokens:
                break
            yield TextDelta(piece)
            sent += 1
            # Give other tasks (and an abort) a turn between words, as a network stream would.
            await asyncio.sleep(0)
        truncated = sent < len(words(text))
        yield Usage(input_tokens, sent)
        yield Stop("max_tokens" if truncated else "end_turn")

    def _tool_call(self, request: LLMRequest, name: str, raw: str, input_tokens: int):
        try:
            arguments = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            return None
        if not isinstance(arguments, dict):
            return None
        return self._emit_call(_tool_names(request).get(name, name), arguments, _tool_call_id(request), input_tokens)

    async def _emit_call(self, name: str, arguments: dict, call_id: str, input_tokens: int) -> AsyncIterator[Event]:
        yield ToolCallStart(0, call_id, name)
        encoded = json.dumps(arguments)
        # Split like a real provider does, so consumers of the deltas get exercised offline too.
        size = max(1, -(-len(encoded) // 3))
        fragments = [encoded[i : i + size] for i in range(0, len(encoded), size)]
        for fragment in fragments:
            yield ToolCallDelta(0, fragment)
            await asyncio.sleep(0)
        yield ToolCallEnd(0, call_id, name, arguments)
        yield Usage(input_tokens, len(fragments) + 1)
        yield Stop("tool_use")
