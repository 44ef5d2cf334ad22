"""What the API answers, in OpenAI's shapes: pure functions over the run service's events."""

import json

# The run's stop reason as OpenAI's finish_reason.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "aborted": "stop",
    "max_tokens": "length",
    "max_tool_rounds": "length",
    "refusal": "content_filter",
}
DONE = b"data: [DONE]\n\n"


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "", "stop")


def usage(run_usage: dict | None) -> dict:
    run_usage = run_usage or {}
    prompt, completion = int(run_usage.get("input_tokens") or 0), int(run_usage.get("output_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def completion_id(run_id: str) -> str:
    return f"chatcmpl-{run_id}"


def completion(run_id: str, model: str, created: int, text: str, done: dict) -> dict:
    """The whole answer (`stream: false`)."""
    return {
        "id": completion_id(run_id),
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": text, "refusal": None},
            "logprobs": None,
            "finish_reason": finish_reason(done.get("stop_reason")),
        }],
        "usage": usage(done.get("usage")),
        "system_fingerprint": None,
    }


def chunk(run_id: str, model: str, created: int, *, delta: dict | None = None, finish: str | None = None,
          run_usage: dict | None = None, with_usage: bool = False) -> dict:
    """One `chat.completion.chunk`. With `stream_options.include_usage` every chunk carries `usage`:
    null, except the last one, which has no choices and the run's usage."""
    body = {"id": completion_id(run_id), "object": "chat.completion.chunk", "created": created, "model": model,
            "system_fingerprint": None}
    if run_usage is not None:
        body["choices"] = []
        body["usage"] = usage(run_usage)
        return body
    body["choices"] = [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish}]
    if with_usage:
        body["usage"] = None
    return body


def sse(data: dict) -> bytes:
    """One Server-Sent Event. JSON escapes non-ASCII, so any text (even a lone surrogate an LLM sent)
    encodes."""
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


def run_failed(event: dict) -> tuple[int, str, str]:
    """An `error` event as (HTTP status, code, message): the LLM behind the agent failing is a bad
    gateway (502), anything else a fault inside exoclaw (500)."""
    reason = str(event.get("reason") or "internal_error")
    message = str(event.get("message") or "The run failed.")
    status = 500 if reason in ("internal_error", "worker_lost", "no_worker") else 502
    return status, reason, f"The agent's run failed ({reason}): {message}"
