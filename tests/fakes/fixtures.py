"""Fixtures for the fake LLM providers; registered in tests/conftest.py."""

import asyncio

import pytest

from agents.providers.transport import RetryPolicy

from .anthropic_server import FakeAnthropic
from .openai_server import FakeOpenAI


@pytest.fixture
def fake_anthropic():
    """A fake Anthropic API on a free loopback port; its `base_url` goes where ANTHROPIC_BASE_URL would."""
    server = FakeAnthropic().start()
    yield server
    server.stop()


@pytest.fixture
def fake_openai():
    """A fake OpenAI API on a free loopback port; its `base_url` (ending in /v1) goes where OPENAI_BASE_URL would."""
    server = FakeOpenAI().start()
    yield server
    server.stop()


class RecordingSleep:
    """Records each retry wait instead of spending it, so retry tests take no time."""

    def __init__(self):
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def retry_sleep():
    return RecordingSleep()


@pytest.fixture
def fast_retry(retry_sleep):
    """Two retries that wait for nothing; `retry_sleep.delays` shows what would have been waited."""
    return RetryPolicy(max_retries=2, initial_delay=0.5, max_delay=8.0, max_retry_after=60.0, sleep=retry_sleep)


@pytest.fixture
def fast_llm_retries(settings):
    """Settings for code that builds its own RetryPolicy (get_provider): retries after 1-2 ms."""
    settings.LLM_MAX_RETRIES = 2
    settings.LLM_RETRY_INITIAL_DELAY = 0.001
    settings.LLM_RETRY_MAX_DELAY = 0.002
    settings.LLM_RETRY_AFTER_MAX = 0.05
    return settings
