"""Reading a `POST /v1/chat/completions` body: pure functions, no Django, no I/O.

`parse_chat(body)` checks everything exoclaw uses and returns a `ChatRequest`, or raises `ApiError`
(400) naming the parameter at fault. Parameters that tune a model (temperature, max_tokens, stop,
seed, response_format, ...) are accepted and ignored: the agent's own settings decide. Client-side
tools (`tools`, `functions`, tool messages) are refused: in this version the agent's own tools run,
in exoclaw's sandbox.
"""

import json
import re
from dataclasses import dataclass, field

from .errors import ApiError, invalid

MAX_MODEL_LENGTH = 200
# A conversation id becomes the session's peer: letters, digits and . _ : @ - (so any UUID, ULID or
# chat id), at most the length of a routing field.
CONVERSATION = re.compile(r"[A-Za-z0-9._:@-]{1,128}")
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
TOOLS_REFUSED = ("Client-side tools are not supported in this version: the agent's own tools run in "
                 "exoclaw's sandbox. Leave out `{param}`.")


@dataclass(frozen=True)
class ChatRequest:
    model: str
    text: str  # the last user message: what is new
    context: list[dict] = field(default_factory=list)  # the messages before it, as the run service takes them
    stream: bool = False
    include_usage: bool = False


def has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def loads(body: bytes) -> object:
    """The body as JSON; 400 for anything that is not (bad UTF-8, bad syntax, absurd nesting)."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise invalid(None, "The request body is not valid JSON.", code="invalid_json") from None


def _text(value, param: str) -> str:
    if isinstance(value, str):
        parts = [value]
    elif isinstance(value, list):
        parts = []
        for i, part in enumerate(value):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                raise invalid(f"{param}[{i}]", f"{param}[{i}] must be a content part such as "
                              '{"type": "text", "text": "..."}.')
            if part["type"] != "text":
                raise invalid(f"{param}[{i}].type", f"Only text content is supported, not {part['type'][:40]!r}.",
                              code="unsupported_content")
            if not isinstance(part.get("text"), str):
                raise invalid(f"{param}[{i}].text", f"{param}[{i}].text must be a string.")
            parts.append(part["text"])
    elif value is None:
        parts = []
    else:
        raise invalid(param, f"{param} must be a string or a list of text parts.")
    text = "".join(parts)
    if has_lone_surrogate(text):
        raise invalid(param, f"{param} holds a lone surrogate (\\ud800-\\udfff), which is not text.")
    return text


def _message(m, i: int) -> dict:
    param = f"messages[{i}]"
    if not isinstance(m, dict):
        raise invalid(param, f"{param} must be an object with a role and content.")
    role = m.get("role")
    if role in ("tool", "function"):
        raise invalid(f"{param}.role", TOOLS_REFUSED.format(param=f"{role} messages"), code="tools_not_supported")
    if role not in ROLES:
        raise invalid(f"{param}.role", f"{param}.role must be one of system, developer, user or assistant.")
    if m.get("tool_calls") or m.get("function_call"):
        raise invalid(f"{param}.tool_calls", TOOLS_REFUSED.format(param="tool_calls"), code="tools_not_supported")
    return {"role": ROLES[role], "content": _text(m.get("content"), f"{param}.content")}


def _flag(data: dict, name: str) -> bool:
    value = data.get(name)
    if value is not None and not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false.")
    return bool(value)


def _refuse_client_tools(data: dict) -> None:
    for name in ("tools", "functions"):
        value = data.get(name)
        if value is not None and value != []:
            raise invalid(name, TOOLS_REFUSED.format(param=name), code="tools_not_supported")
    for name in ("tool_choice", "function_call"):
        if data.get(name) not in (None, "none", "auto"):
            raise invalid(name, TOOLS_REFUSED.format(param=name), code="tools_not_supported")


def parse_chat(data: object) -> ChatRequest:
    """The parts of a chat completion request exoclaw uses, checked."""
    if not isinstance(data, dict):
        raise invalid(None, "The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("model", "model is required: the name of an agent (GET /v1/models lists them).")
    if has_lone_surrogate(model):
        raise invalid("model", "model holds a lone surrogate (\\ud800-\\udfff), which is not text.")
    if len(model) > MAX_MODEL_LENGTH:
        raise ApiError(404, "The model does not exist.", param="model", code="model_not_found")
    _refuse_client_tools(data)
    n = data.get("n")
    if n is not None and (type(n) is not int or n != 1):
        raise invalid("n", "n must be 1: an agent gives one answer per request.")
    stream = _flag(data, "stream")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise invalid("stream_options", "stream_options must be an object.")
    include_usage = _flag(options or {}, "include_usage")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages must be a non-empty list.")
    checked = [_message(m, i) for i, m in enumerate(messages)]
    last = checked[-1]
    if last["role"] != "user" or not last["content"].strip():
        raise invalid("messages", "The last message must be the user's, with text: it is what the agent answers.")
    return ChatRequest(model, last["content"], checked[:-1], stream, include_usage)


def conversation_id(value: str | None) -> str | None:
    """The X-Exoclaw-Conversation header, checked; None when absent."""
    if value is None:
        return None
    if not CONVERSATION.fullmatch(value):
        raise invalid(None, "X-Exoclaw-Conversation must be 1 to 128 letters, digits or . _ : @ -.",
                      code="invalid_conversation")
    return value
