"""A fake OpenAI Chat Completions API: the exact chunk sequence of `POST /v1/chat/completions` with `stream: true`.

    fake_openai.enqueue(completion(Text("Hello there")))
    fake_openai.enqueue(completion(ToolUse.split("call_1", "calc__add", {"a": 1})))
    fake_openai.enqueue(completion(Text("hi"), usage=None))  # a compatible server without a usage chunk
"""

from __future__ import annotations

import hashlib
import json

from .http import FakeServer, Recorded, Reply, Stream, Text, ToolUse, last_tool_result

DONE = b"data: [DONE]\n\n"


def data(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()


def chunk(delta: dict | None = None, finish_reason: str | None = None, *, usage: dict | None = None,
          model: str = "gpt-test") -> bytes:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]
    return data({"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1700000000, "model": model,
                 "choices": choices, "usage": usage})


def chunks(
    *blocks: Text | ToolUse,
    finish_reason: str | None = None,
    usage: tuple[int, int] | None = (12, 0),
    done: bool = True,
) -> list[bytes]:
    """The chunks of one streamed completion.

    `usage=(prompt, completion)` sends the include_usage chunk (completion 0: the number of deltas);
    `usage=None` leaves it out, as several compatible servers do.
    """
    out = [chunk({"role": "assistant", "content": ""})]
    deltas = 0
    tool_index = 0
    for block in blocks:
        if isinstance(block, Text):
            for piece in block.pieces():
                deltas += 1
                out.append(chunk({"content": piece}))
        else:
            deltas += 1
            out.append(chunk({"tool_calls": [{"index": tool_index, "id": block.id, "type": "function",
                                              "function": {"name": block.name, "arguments": ""}}]}))
            for fragment in block.fragments:
                deltas += 1
                out.append(chunk({"tool_calls": [{"index": tool_index, "function": {"arguments": fragment}}]}))
            tool_index += 1
    if finish_reason is None:
        finish_reason = "tool_calls" if tool_index else "stop"
    out.append(chunk({}, finish_reason))
    if usage is not None:
        prompt, completion = usage
        completion = completion or deltas
        out.append(chunk(usage={"prompt_tokens": prompt, "completion_tokens": completion,
                                "total_tokens": prompt + completion}))
    if done:
        out.append(DONE)
    return out


def completion(*blocks: Text | ToolUse, **kwargs) -> Stream:
    return Stream(chunks(*blocks, **kwargs))


def error_body(error_type: str, text: str, code: str | None = None) -> dict:
    return {"error": {"message": text, "type": error_type, "param": None, "code": code}}


def rate_limited(retry_after: str = "0") -> Reply:
    return Reply(429, error_body("requests", "Rate limit reached for requests", "rate_limit_exceeded"),
                 {"retry-after": retry_after})


def server_error(status: int = 503) -> Reply:
    return Reply(status, error_body("server_error", "The server is overloaded or not ready yet."))


def tool_round_trip(wire_name: str, arguments: dict, reply: str = "The tool said: {result}"):
    """A responder: asks for one tool call, then answers with the tool's result in text."""

    def respond(request: Recorded) -> Stream:
        result = last_tool_result(request.json)
        if result is None:
            call_id = "call_" + hashlib.sha1(request.body).hexdigest()[:12]
            return completion(ToolUse.split(call_id, wire_name, arguments))
        return completion(Text(reply.format(result=result["content"])))

    return respond


class FakeOpenAI(FakeServer):
    @property
    def base_url(self) -> str:
        """What OPENAI_BASE_URL or an agent's base_url would hold (the SDK appends /chat/completions)."""
        return self.root + "/v1"
