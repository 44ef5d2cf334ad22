"""From an Agent row to a provider and a request."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from .anthropic import AnthropicProvider
from .base import Error, LLMRequest, Provider, ToolSpec
from .echo import EchoProvider
from .openai import OpenAIProvider
from .transport import RetryPolicy


class _Misconfigured:
    """Stands in for a provider that cannot be built, so the mistake reaches the run as an event."""

    def __init__(self, kind: str, message: str):
        self.error = Error(kind, message)

    async def stream(self, request: LLMRequest):
        yield self.error


def _api_key(agent: Any, default_env: str, default_value: str) -> tuple[str, str]:
    """(key, the variable it comes from). An agent that names its own variable never falls back."""
    if agent.api_key_env:
        return os.environ.get(agent.api_key_env, ""), agent.api_key_env
    return default_value, default_env


def get_provider(agent: Any, *, retry: RetryPolicy | None = None) -> Provider:
    """The provider for `agent` (an `agents.models.Agent` or anything with the same fields).

    Base URL: the agent's, else ANTHROPIC_BASE_URL / OPENAI_BASE_URL. Key: the environment
    variable the agent names in `api_key_env`, else ANTHROPIC_API_KEY / OPENAI_API_KEY. A
    missing key or an unknown provider gives a provider whose stream is one `Error` event.
    """
    retry = retry or RetryPolicy.from_settings()
    if agent.provider == "echo":
        return EchoProvider()
    if agent.provider == "anthropic":
        key, env = _api_key(agent, "ANTHROPIC_API_KEY", settings.ANTHROPIC_API_KEY)
        return AnthropicProvider(agent.base_url or settings.ANTHROPIC_BASE_URL, key, key_env=env, retry=retry)
    if agent.provider == "openai":
        key, env = _api_key(agent, "OPENAI_API_KEY", settings.OPENAI_API_KEY)
        return OpenAIProvider(agent.base_url or settings.OPENAI_BASE_URL, key, key_env=env, retry=retry)
    return _Misconfigured("config", f"unknown provider {agent.provider!r}: use anthropic, openai or echo")


def request_for(
    agent: Any, messages: list[dict[str, Any]], tools: Iterable[ToolSpec] = (), *, system: str | None = None
) -> LLMRequest:
    """An LLMRequest with the agent's model, system prompt, temperature, max_tokens and timeout."""
    return LLMRequest(
        model=agent.model,
        system=agent.system_prompt if system is None else system,
        messages=messages,
        tools=tuple(tools),
        max_tokens=agent.max_tokens,
        temperature=agent.temperature,
        timeout=agent.request_timeout,
    )

