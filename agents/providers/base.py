"""What every provider speaks: the request it takes, the events it streams, tool-name mapping.

Messages use one product-wide content-block format (Anthropic-style, the session store keeps the
same), and tool names inside it are exoclaw's own (`plugin.tool`). Each provider translates both
at its wire boundary, so nothing above this package knows which provider is in use.

Every stream ends with exactly one `Stop` (preceded by one `Usage` when the provider reported
token counts) or exactly one `Error`; nothing follows either.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, Union

# --- The request ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ToolSpec:
    name: str  # exoclaw's name, e.g. "calc.add"; providers map it to a valid wire name
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True)
class LLMRequest:
    """One LLM turn.

    `messages` is a list of `{"role": "user" | "assistant", "content": [block, ...]}` where a block
    is one of
        {"type": "text", "text": str}
        {"type": "tool_use", "id": str, "name": str, "input": dict}
        {"type": "tool_result", "tool_use_id": str, "content": str, "is_error": bool}
    `timeout` is in seconds: the longest wait to connect, for the first byte, or between two chunks.
    """

    model: str
    messages: list[dict[str, Any]]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int = 1024
    temperature: float | None = None
    timeout: float = 60.0


# --- The events ----------------------------------------------------------------------------


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class ToolCallStart:
    index: int  # 0-based position of the tool call within this response
    id: str
    name: str  # exoclaw's name (mapped back from the wire name)


@dataclass(frozen=True)
class ToolCallDelta:
    index: int
    partial_json: str


@dataclass(frozen=True)
class ToolCallEnd:
    """A complete tool call.

    When the model's assembled arguments are not a JSON object, `arguments` is `{}` and `error`
    says why; the stream goes on, so the tool loop can answer with an error tool_result and let
    the model correct itself instead of failing the run.
    """

    index: int
    id: str
    name: str
    arguments: dict[str, Any]
    error: str | None = None


@dataclass(frozen=True)
class Usage:
    input_tokens: int
    output_tokens: int


# Stop reasons use Anthropic's vocabulary; OpenAI's are translated (stop -> end_turn,
# length -> max_tokens, tool_calls -> tool_use, content_filter -> refusal). `raw` keeps the
# provider's own word.
StopReason = Literal["end_turn", "max_tokens", "tool_use", "stop_sequence", "refusal", "pause_turn"]


@dataclass(frozen=True)
class Stop:
    reason: str
    raw: str = ""


ErrorKind = Literal[
    "config",  # the agent is not usable as configured (no model, bad base URL)
    "auth",  # no API key, or the provider refused it (401/403)
    "bad_request",  # the provider rejected the request (400, 413, 422, other 4xx)
    "not_found",  # unknown model or endpoint (404)
    "rate_limited",  # 429
    "overloaded",  # 529, or Anthropic's overloaded_error
    "server_error",  # 5xx
    "timeout",  # no answer within the request timeout
    "connection",  # could not connect, or the stream was interrupted
    "bad_response",  # the provider answered something that is not its protocol
]


@dataclass(frozen=True)
class Error:
    """The stream failed. `retryable` says the cause is transient (trying later may work);
    retries already happened before this event was sent."""

    kind: str
    message: str
    retryable: bool = False
    status: int | None = None


Event = Union[TextDelta, ToolCallStart, ToolCallDelta, ToolCallEnd, Usage, Stop, Error]


class Provider(Protocol):
    def stream(self, request: LLMRequest) -> AsyncIterator[Event]:
        """An async generator of events; close it (e.g. `contextlib.aclosing`) to abort."""
        ...


class ProviderError(Exception):
    """Raised inside a provider; turned into one `Error` event at the stream's edge."""

    def __init__(
        self,
        kind: str,
        message: str,
        *,
        retryable: bool = False,
        status: int | None = None,
        retry_after: float | None = None,
    ):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after

    def event(self) -> Error:
        return Error(self.kind, self.message, self.retryable, self.status)


def parse_arguments(raw: str) -> tuple[dict[str, Any], str | None]:
    """A tool call's assembled JSON arguments -> (arguments, error). Empty means no arguments."""
    if not raw.strip():
        return {}, None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return {}, f"tool arguments are not valid JSON ({exc.msg} at position {exc.pos}): {raw[:200]!r}"
    if not isinstance(value, dict):
        return {}, f"tool arguments must be a JSON object, got {type(value).__name__}: {raw[:200]!r}"
    return value, None


def text_of(message: dict[str, Any]) -> str:
    """The concatenated text blocks of a message."""
    return "".join(b.get("text", "") for b in message.get("content", ()) if b.get("type") == "text")


# --- Tool names ----------------------------------------------------------------------------

WIRE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_INVALID = re.compile(r"[^a-zA-Z0-9_-]")


def _wire_candidate(name: str) -> str:
    candidate = _INVALID.sub("_", name.replace(".", "__")) or "tool"
    if len(candidate) > 64:
        # A stable hash suffix keeps two long names that share a prefix apart.
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        candidate = f"{candidate[:55]}_{digest}"
    return candidate


@dataclass(frozen=True)
class ToolNameMap:
    """exoclaw tool names <-> names valid for every provider (`^[a-zA-Z0-9_-]{1,64}$`).

    `plugin.tool` becomes `plugin__tool`; other invalid characters become `_`; names too long are
    cut and given a hash suffix; a name that would collide with one already taken gets `_2`,
    `_3`, ... The mapping depends only on the set of names, not their order.
    """

    to_wire: dict[str, str] = field(default_factory=dict)
    to_internal: dict[str, str] = field(default_factory=dict)

    @classmethod
    def build(cls, names: Iterable[str]) -> ToolNameMap:
        unique = sorted(set(names))
        to_wire: dict[str, str] = {}
        taken: set[str] = set()
        # Names already valid keep themselves, so they never lose their name to a mapped one.
        for name in unique:
            if WIRE_NAME.match(name):
                to_wire[name] = name
                taken.add(name)
        for name in unique:
            if name in to_wire:
                continue
            base = candidate = _wire_candidate(name)
            n = 2
            while candidate in taken:
                suffix = f"_{n}"
                candidate = base[: 64 - len(suffix)] + suffix
                n += 1
            to_wire[name] = candidate
            taken.add(candidate)
        return cls(to_wire, {wire: name for name, wire in to_wire.items()})

    @classmethod
    def for_request(cls, request: LLMRequest) -> ToolNameMap:
        """Covers the offered tools and every tool named in the history (tools offered earlier)."""
        names = [t.name for t in request.tools]
        for message in request.messages:
            names += [b["name"] for b in message.get("content", ()) if b.get("type") == "tool_use"]
        return cls.build(names)

    def wire(self, name: str) -> str:
        return self.to_wire.get(name) or _wire_candidate(name)

    def internal(self, wire_name: str) -> str:
        # A name the model made up stays as it is, so the tool loop can refuse it by name.
        return self.to_internal.get(wire_name, wire_name)
