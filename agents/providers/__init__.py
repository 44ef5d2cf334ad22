"""LLM providers behind one streaming event model; see docs/providers.md."""

from .base import (
    Error,
    Event,
    LLMRequest,
    Provider,
    Stop,
    TextDelta,
    ToolCallDelta,
    ToolCallEnd,
    ToolCallStart,
    ToolNameMap,
    ToolSpec,
    Usage,
)
from .factory import get_provider, request_for
from .transport import RetryPolicy, aclose_shared_client

__all__ = [
    "Error",
    "Event",
    "LLMRequest",
    "Provider",
    "RetryPolicy",
    "Stop",
    "TextDelta",
    "ToolCallDelta",
    "ToolCallEnd",
    "ToolCallStart",
    "ToolNameMap",
    "ToolSpec",
    "Usage",
    "aclose_shared_client",
    "get_provider",
    "request_for",
]
