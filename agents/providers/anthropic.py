"""Anthropic Messages API (`POST {base_url}/v1/messages`, `stream: true`)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import aclosing
from functools import partial
from typing import Any

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

API_VERSION = "2023-06-01"


def wire_messages(messages: list[dict[str, Any]], names: ToolNameMap) -> list[dict[str, Any]]:
    """Our content blocks -> Anthropic's: the same shape, rebuilt so stored extras never leak out."""
    out = []
    for message in messages:
        blocks = []
        for block in message["content"]:
            kind = block.get("type")
            if kind == "text":
                # The API rejects empty text blocks.
                if block["text"]:
                    blocks.append({"type": "text", "text": block["text"]})
            elif kind == "tool_use":
                blocks.append(
                    {"type": "tool_use", "id": block["id"], "name": names.wire(block["name"]), "input": block["input"]}
                )
            elif kind == "tool_result":
                blocks.append(
                    {
                        "type": "tool_result",
                        "tool_use_id": block["tool_use_id"],
                        "content": block["content"],
                        "is_error": bool(block.get("is_error", False)),
                    }
                )
            else:
                raise ProviderError("bad_request", f"unsupported content block type {kind!r} in the conversation")
        out.append({"role": message["role"], "content": blocks})
    return out


def request_body(request: LLMRequest, names: ToolNameMap) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": wire_messages(request.messages, names),
        "stream": True,
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.tools:
        body["tools"] = [
            {"name": names.wire(t.name), "description": t.description, "input_schema": t.input_schema}
            for t in request.tools
        ]
    return body


class AnthropicProvider:
    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        key_env: str = "ANTHROPIC_API_KEY",
        retry: RetryPolicy | None = None,
        client: httpx.AsyncClient | None = None,
    ):
        self.url = base_url.rstrip("/") + "/v1/messages"
        self.api_key = api_key
        self.key_env = key_env
        self.retry = retry or RetryPolicy()
        self.client = client

    async def stream(self, request: LLMRequest) -> AsyncIterator[Event]:
        if not self.api_key:
            yield Error("auth", f"no Anthropic API key: set the environment variable {self.key_env}")
            return
        if not request.model:
            yield Error("config", "no model set for this agent (e.g. claude-sonnet-4-5)")
            return
        names = ToolNameMap.for_request(request)
        try:
            body = request_body(request, names)
        except ProviderError as exc:
            yield exc.event()
            return
        headers = {"x-api-key": self.api_key, "anthropic-version": API_VERSION, "accept": "text/event-stream"}
        client = self.client or shared_client()
        attempt = partial(self._attempt, client, headers, body, request.timeout, names)
        async with aclosing(with_retries(attempt, self.retry)) as events:
            async for event in events:
                yield event

    async def _attempt(
        self, client: httpx.AsyncClient, headers: dict, body: dict, timeout: float, names: ToolNameMap
    ) -> AsyncIterator[Event]:
        parser = _StreamState(names)
        async with aclosing(post_sse(client, self.url, headers=headers, body=body, timeout=timeout,
                                     provider="anthropic")) as stream:
            async for sse in stream:
                data = loads(sse)
                try:
                    events = parser.handle(data)
                except (KeyError, TypeError, AttributeError, ValueError):
                    raise ProviderError(
                        "bad_response", f"unexpected {sse.event!r} event from Anthropic: {sse.data[:200]!r}"
                    ) from None
                for event in events:
                    yield event
                if parser.done:
                    return
        raise interrupted(self.url)


class _StreamState:
    """Turns Anthropic's stream events, in order, into ours."""

    def __init__(self, names: ToolNameMap):
        self.names = names
        self.tools: dict[int, list] = {}  # block index -> [ordinal, id, name, json parts]
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason = ""
        self.done = False

    def handle(self, data: dict[str, Any]) -> list[Event]:
        kind = data["type"]
        if kind == "message_start":
            usage = data["message"].get("usage") or {}
            self.input_tokens = usage.get("input_tokens", 0)
            self.output_tokens = usage.get("output_tokens", 0)
        elif kind == "content_block_start":
            block = data["content_block"]
            if block["type"] == "tool_use":
                ordinal = len(self.tools)
                name = self.names.internal(block["name"])
                self.tools[data["index"]] = [ordinal, block["id"], name, []]
                return [ToolCallStart(ordinal, block["id"], name)]
            if block["type"] == "text" and block.get("text"):
                return [TextDelta(block["text"])]
        elif kind == "content_block_delta":
            delta = data["delta"]
            if delta["type"] == "text_delta" and delta["text"]:
                return [TextDelta(delta["text"])]
            if delta["type"] == "input_json_delta" and delta["partial_json"]:
                tool = self.tools[data["index"]]
                tool[3].append(delta["partial_json"])
                return [ToolCallDelta(tool[0], delta["partial_json"])]
        elif kind == "content_block_stop":
            tool = self.tools.get(data["index"])
            if tool is not None:
                arguments, error = parse_arguments("".join(tool[3]))
                return [ToolCallEnd(tool[0], tool[1], tool[2], arguments, error)]
        elif kind == "message_delta":
            self.stop_reason = data["delta"].get("stop_reason") or self.stop_reason
            usage = data.get("usage") or {}
            self.input_tokens = usage.get("input_tokens") or self.input_tokens
            self.output_tokens = usage.get("output_tokens", self.output_tokens)
        elif kind == "message_stop":
            self.done = True
            return [Usage(self.input_tokens, self.output_tokens), Stop(self.stop_reason or "end_turn", self.stop_reason)]
        elif kind == "error":
            raise error_from_event(data)
        # ping and event types added to the API later are ignored, as Anthropic asks of clients.
        return []
