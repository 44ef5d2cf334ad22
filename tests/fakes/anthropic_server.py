"""A fake Anthropic Messages API: the exact SSE event sequence of `POST /v1/messages` with `stream: true`.

    fake_anthropic.enqueue(message(Text("Hello there")))
    fake_anthropic.enqueue(message(ToolUse.split("toolu_1", "calc__add", {"a": 1}), stop_reason="tool_use"))
    fake_anthropic.enqueue(rate_limited(retry_after="0"), overloaded(), Stream(events(Text("hi"))[:3], drop=True))
"""

from __future__ import annotations

import hashlib
import json

from .http import FakeServer, Recorded, Reply, Stream, Text, ToolUse, last_tool_result


def sse(event: str, data: dict) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


PING = sse("ping", {"type": "ping"})


def events(
    *blocks: Text | ToolUse,
    stop_reason: str = "end_turn",
    input_tokens: int = 12,
    output_tokens: int | None = None,
    pings: bool = True,
    model: str = "claude-test",
) -> list[bytes]:
    """The chunks of one streamed message; a ping after message_start and between blocks."""
    deltas = 0
    out = [
        sse("message_start", {
            "type": "message_start",
            "message": {"id": "msg_fake", "type": "message", "role": "assistant", "content": [], "model": model,
                        "stop_reason": None, "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1}},
        })
    ]
    for index, block in enumerate(blocks):
        if pings:
            out.append(PING)
        if isinstance(block, Text):
            out.append(sse("content_block_start", {"type": "content_block_start", "index": index,
                                                   "content_block": {"type": "text", "text": ""}}))
            for piece in block.pieces():
                deltas += 1
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "text_delta", "text": piece}}))
        else:
            out.append(sse("content_block_start", {
                "type": "content_block_start", "index": index,
                "content_block": {"type": "tool_use", "id": block.id, "name": block.name, "input": {}},
            }))
            for fragment in ("",) + block.fragments:
                deltas += 1
                out.append(sse("content_block_delta", {"type": "content_block_delta", "index": index,
                                                       "delta": {"type": "input_json_delta", "partial_json": fragment}}))
        out.append(sse("content_block_stop", {"type": "content_block_stop", "index": index}))
    out.append(sse("message_delta", {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": {"output_tokens": deltas if output_tokens is None else output_tokens},
    }))
    out.append(sse("message_stop", {"type": "message_stop"}))
    return out


def message(*blocks: Text | ToolUse, **kwargs) -> Stream:
    return Stream(events(*blocks, **kwargs))


def error_body(error_type: str, text: str) -> dict:
    return {"type": "error", "error": {"type": error_type, "message": text}}


def error_event(error_type: str = "overloaded_error", text: str = "Overloaded") -> bytes:
    return sse("error", error_body(error_type, text))


def overloaded() -> Reply:
    return Reply(529, error_body("overloaded_error", "Overloaded"))


def rate_limited(retry_after: str = "0") -> Reply:
    return Reply(429, error_body("rate_limit_error", "Number of requests has exceeded your rate limit"),
                 {"retry-after": retry_after})


def tool_round_trip(wire_name: str, arguments: dict, reply: str = "The tool said: {result}"):
    """A responder: asks for one tool call, then answers with the tool's result in text.

    Decides from each request alone, so it serves any number of concurrent conversations.
    """

    def respond(request: Recorded) -> Stream:
        result = last_tool_result(request.json)
        if result is None:
            return message(ToolUse.split("toolu_" + hashlib.sha1(request.body).hexdigest()[:12], wire_name, arguments), stop_reason="tool_use")
        return message(Text(reply.format(result=result["content"])))

    return respond


class FakeAnthropic(FakeServer):
    @property
    def base_url(self) -> str:
        """What ANTHROPIC_BASE_URL or an agent's base_url would hold (the SDK appends /v1/messages)."""
        return self.root
