"""OpenAI Chat Completions (`POST {base_url}/chat/completions`, `stream: true`).

Also serves OpenAI-compatible servers (Ollama, vLLM, llama.cpp's llama-server, LM Studio) through
`base_url`. Their known differences are absorbed here:
- no usage chunk despite `stream_options.include_usage`: the stream then has no `Usage` event;
- tool calls sent whole in one chunk, without `index`, or with `finish_reason: "stop"`: handled;
- arguments sent as a JSON object instead of a string: re-encoded;
- no `[DONE]` after a `finish_reason`: the stream is taken as complete at end of data;
- no key needed: without a key no `Authorization` header is sent (api.openai.com itself
  requires one, so a missing key there is an `auth` error before any request).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx

from .base import (
    Error,
    Event,
    LLMRequest,
    ProviderError,
    Stop,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolNameMap,
    Usage,
    parse_arguments,
)
from .transport import RetryPolicy, error_from_event, interrupted, loads, post_sse, shared_client, with_retries

OFFICIAL_HOST = "api.openai.com"
FINISH_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                  "function_call": "tool_use", "content_filter": "refusal"}
# OpenAI has no error flag on tool results; the model learns of a failure from this prefix.
TOOL_ERROR_PREFIX = "Error: "


def wire_messages(system: str, messages: list[dict[str, Any]], names: ToolNameMap) -> list[dict[str, Any]]:
    """Our content blocks -> Chat Completions messages.

    An assistant message's text blocks become `content`, its tool_use blocks `tool_calls`; a
    user message's tool_result blocks become `role: tool` messages, placed before its text because
    they must directly follow the assistant message that made the calls.
    """
    out: list[dict[str, Any]] = [{"role": "system", "content": system}] if system else []
    for message in messages:
        texts, calls, results = [], [], []
        for block in message["content"]:
            kind = block.get("type")
            if kind == "text":
                texts.append(block["text"])
            elif kind == "tool_use":
                calls.append({
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": names.wire(block["name"]), "arguments": json.dumps(block["input"])},
                })
            elif kind == "tool_result":
                content = block["content"]
                if block.get("is_error"):
                    content = TOOL_ERROR_PREFIX + content
                results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": content})
            else:
                raise ProviderError("bad_request", f"unsupported content block type {kind!r} in the conversation")
        text = "\n".join(t for t in texts if t)
        if message["role"] == "assistant":
            wire: dict[str, Any] = {"role": "assistant", "content": text or None}
            if calls:
                wire["tool_calls"] = calls
            out.append(wire)
        else:
            out += results
            if text:
                out.append({"role": "user", "content": text})
    return out


def request_body(request: LLMRequest, names: ToolNameMap, official: bool) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "messages": wire_messages(request.system, request.messages, names),
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    # api.openai.com's reasoning models refuse `max_tokens`; most compatible servers only know it.
    body["max_completion_tokens" if official else "max_tokens"] = request.max_tokens
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        body["tools"] = [
            {
                "type": "function",
                "function": {"name": names.wire(t.name), "description": t.description, "parameters": t.input_schema},
            }
            for t in request.tools
        ]
    return body


class OpenAIProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        key_env: str = "OPENAI_API_KEY",
        retry: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.official = urlsplit(base_url).hostname == OFFICIAL_HOST
        self.api_key = api_key
        self.key_env = key_env
        self.retry = retry or RetryPolicy()
        self.client = client

    async def stream(self, request: LLMRequest) -> AsyncIterator[Event]:
        if not self.api_key and self.official:
            yield Error("auth", f"no OpenAI API key: set the environment variable {self.key_env}")
            return
        if not request.model:
            yield Error("config", "no model set for this agent (e.g. gpt-4o, or the model name your server serves)")
            return
        names = ToolNameMap.for_request(request)
        try:
            body = request_body(request, names, self.official)
        except ProviderError as exc:
            yield exc.event()
            return
        headers = {"accept": "text/event-stream"}
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        client = self.client or shared_client()
        attempt = partial(self._attempt, client, headers, body, request.timeout, names)
        async with aclosing(with_retries(attempt, self.retry)) as events:
            async for event in events:
                yield event

    async def _attempt(
        self, client: httpx.AsyncClient, headers: dict, body: dict, timeout: float, names: ToolNameMap
    ) -> AsyncIterator[Event]:
        state = _StreamState(names)
        async with aclosing(post_sse(client, self.url, headers=headers, body=body, timeout=timeout,
                                     provider="openai")) as stream:
            async for sse in stream:
                if sse.data.strip() == "[DONE]":
                    for event in state.finish():
                        yield event
                    return
                chunk = loads(sse)
                try:
                    events = state.handle(chunk)
                except (KeyError, TypeError, AttributeError, ValueError, IndexError):
                    raise ProviderError(
                        "bad_response", f"unexpected chunk from {self.url}: {sse.data[:200]!r}"
                    ) from None
                for event in events:
                    yield event
        if state.finish_reason is None:
            raise interrupted(self.url)
        for event in state.finish():
            yield event


class _ToolCall:
    def __init__(self, ordinal: int, id: str, name: str):
        self.ordinal, self.id, self.name = ordinal, id, name
        self.parts: list[str] = []
        self.started = self.ended = False


class _StreamState:
    """Turns chat.completion.chunk objects, in order, into our events."""

    def __init__(self, names: ToolNameMap):
        self.names = names
        self.calls: dict[Any, _ToolCall] = {}
        self.last_key: Any = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None

    def handle(self, chunk: dict[str, Any]) -> list[Event]:
        if chunk.get("error"):
            raise error_from_event(chunk)
        events: list[Event] = []
        if chunk.get("usage"):
            usage = chunk["usage"]
            self.usage = Usage(usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0)
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if delta.get("content"):
                events.append(TextDelta(delta["content"]))
            for fragment in delta.get("tool_calls") or ():
                events += self._tool_fragment(fragment)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
                events += self._end_calls()
        return events

    def _tool_fragment(self, fragment: dict[str, Any]) -> list[Event]:
        if "index" in fragment:
            key = fragment["index"]
        elif fragment.get("id") and fragment["id"] not in {c.id for c in self.calls.values()}:
            key = ("id", fragment["id"])
        else:
            key = self.last_key
        self.last_key = key
        call = self.calls.get(key)
        function = fragment.get("function") or {}
        if call is None:
            ordinal = len(self.calls)
            # Some servers send no id; a stable one keeps the tool_result linkable.
            call = self.calls[key] = _ToolCall(ordinal, fragment.get("id") or f"call_{ordinal}", "")
        if function.get("name") and not call.name:
            call.name = self.names.internal(function["name"])
        arguments = function.get("arguments")
        if isinstance(arguments, dict):
            arguments = json.dumps(arguments)
        events: list[Event] = []
        if arguments:
            call.parts.append(arguments)
        if not call.started and call.name:
            call.started = True
            events.append(ToolCallStart(call.ordinal, call.id, call.name))
            if call.parts:
                events.append(ToolCallDelta(call.ordinal, "".join(call.parts)))
        elif call.started and arguments:
            events.append(ToolCallDelta(call.ordinal, arguments))
        return events

    def _end_calls(self) -> list[Event]:
        events: list[Event] = []
        for call in sorted(self.calls.values(), key=lambda c: c.ordinal):
            if call.ended:
                continue
            call.ended = True
            if not call.started:
                call.started = True
                events.append(ToolCallStart(call.ordinal, call.id, call.name))
            arguments, error = parse_arguments("".join(call.parts))
            events.append(ToolCallEnd(call.ordinal, call.id, call.name, arguments, error))
        return events

    def finish(self) -> list[Event]:
        events = self._end_calls()
        if self.usage is not None:
            events.append(self.usage)
        raw = self.finish_reason or ""
        reason = FINISH_REASONS.get(raw, raw) if raw else "end_turn"
        if self.calls and reason == "end_turn":
            reason = "tool_use"
        events.append(Stop(reason, raw))
        return events
