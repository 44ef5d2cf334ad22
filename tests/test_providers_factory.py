import pytest

from agents.models import Agent
from agents.providers import (
    Error, LLMRequest, RetryPolicy, Stop, TextDelta, ToolSpec, Usage, get_provider, request_for,
)
from agents.providers.anthropic import AnthropicProvider
from agents.providers.echo import EchoProvider
from agents.providers.openai import OpenAIProvider
from tests.fakes.anthropic_server import message, overloaded
from tests.fakes.http import Text
from tests.fakes.openai_server import completion

HELLO = [{"role": "user", "content": [{"type": "text", "text": "hello"}]}]


async def collect(provider, request):
    return [event async for event in provider.stream(request)]


@pytest.fixture
def no_keys(settings, monkeypatch):
    settings.ANTHROPIC_API_KEY = ""
    settings.OPENAI_API_KEY = ""
    monkeypatch.delenv("AGENT_KEY", raising=False)
    return settings


def test_echo_agent_gets_the_echo_provider():
    assert isinstance(get_provider(Agent(provider="echo")), EchoProvider)


def test_base_urls_fall_back_to_the_settings(no_keys):
    no_keys.ANTHROPIC_BASE_URL = "http://anthropic.internal:1"
    no_keys.OPENAI_BASE_URL = "http://openai.internal:2/v1/"
    assert get_provider(Agent(provider="anthropic")).url == "http://anthropic.internal:1/v1/messages"
    assert get_provider(Agent(provider="openai")).url == "http://openai.internal:2/v1/chat/completions"


def test_agent_base_url_wins_over_the_settings(no_keys):
    no_keys.OPENAI_BASE_URL = "http://openai.internal:2/v1"
    provider = get_provider(Agent(provider="openai", base_url="http://127.0.0.1:11434/v1"))
    assert isinstance(provider, OpenAIProvider) and provider.url == "http://127.0.0.1:11434/v1/chat/completions"


def test_keys_fall_back_to_the_settings(no_keys):
    no_keys.ANTHROPIC_API_KEY = "sk-ant-default"
    no_keys.OPENAI_API_KEY = "sk-default"
    assert get_provider(Agent(provider="anthropic")).api_key == "sk-ant-default"
    assert get_provider(Agent(provider="openai")).api_key == "sk-default"


def test_agent_key_variable_wins_over_the_default_key(no_keys, monkeypatch):
    no_keys.ANTHROPIC_API_KEY = "sk-ant-default"
    monkeypatch.setenv("AGENT_KEY", "sk-ant-agent")
    provider = get_provider(Agent(provider="anthropic", api_key_env="AGENT_KEY"))
    assert isinstance(provider, AnthropicProvider)
    assert (provider.api_key, provider.key_env) == ("sk-ant-agent", "AGENT_KEY")


def test_retry_policy_comes_from_the_settings(settings):
    settings.LLM_MAX_RETRIES = 5
    settings.LLM_RETRY_INITIAL_DELAY = 0.1
    settings.LLM_RETRY_MAX_DELAY = 1.0
    settings.LLM_RETRY_AFTER_MAX = 7.0
    assert get_provider(Agent(provider="openai")).retry == RetryPolicy(5, 0.1, 1.0, 7.0)


def test_request_carries_the_agents_parameters():
    agent = Agent(model="claude-x", system_prompt="You help.", temperature=0.3, max_tokens=99, request_timeout=12.5)
    tool = ToolSpec("calc.add", "", {})
    assert request_for(agent, HELLO, [tool]) == LLMRequest(
        model="claude-x", system="You help.", messages=HELLO, tools=(tool,), max_tokens=99, temperature=0.3,
        timeout=12.5,
    )
    assert request_for(agent, HELLO, system="Other.").system == "Other."


@pytest.mark.asyncio
async def test_missing_agent_key_variable_is_an_error_naming_it(no_keys, fake_anthropic):
    no_keys.ANTHROPIC_API_KEY = "sk-ant-default"
    agent = Agent(provider="anthropic", model="m", base_url=fake_anthropic.base_url, api_key_env="AGENT_KEY")
    assert await collect(get_provider(agent), request_for(agent, HELLO)) == [
        Error("auth", "no Anthropic API key: set the environment variable AGENT_KEY")
    ]
    assert fake_anthropic.requests == []


@pytest.mark.asyncio
async def test_missing_default_key_is_an_error_naming_the_sdk_variable(no_keys):
    agent = Agent(provider="anthropic", model="m")
    assert await collect(get_provider(agent), request_for(agent, HELLO)) == [
        Error("auth", "no Anthropic API key: set the environment variable ANTHROPIC_API_KEY")
    ]


@pytest.mark.asyncio
async def test_unknown_provider_is_a_config_error():
    agent = Agent(provider="gemini", model="m")
    [error] = await collect(get_provider(agent), request_for(agent, HELLO))
    assert error.kind == "config" and "unknown provider 'gemini'" in error.message


@pytest.mark.asyncio
async def test_anthropic_agent_streams_from_the_configured_server(no_keys, fake_anthropic, fast_llm_retries):
    no_keys.ANTHROPIC_BASE_URL = fake_anthropic.base_url
    no_keys.ANTHROPIC_API_KEY = "sk-ant-settings"
    fake_anthropic.enqueue(overloaded(), message(Text("hi")))
    agent = Agent(provider="anthropic", model="claude-test", max_tokens=50)
    assert await collect(get_provider(agent), request_for(agent, HELLO)) == [
        TextDelta("hi"), Usage(12, 1), Stop("end_turn", "end_turn"),
    ]
    assert fake_anthropic.requests[1].headers["x-api-key"] == "sk-ant-settings"
    assert fake_anthropic.requests[1].json["max_tokens"] == 50


@pytest.mark.asyncio
async def test_openai_agent_streams_from_its_own_base_url_and_key(no_keys, fake_openai, monkeypatch):
    monkeypatch.setenv("AGENT_KEY", "sk-agent")
    fake_openai.enqueue(completion(Text("hi")))
    agent = Agent(provider="openai", model="llama3.2", base_url=fake_openai.base_url, api_key_env="AGENT_KEY")
    assert await collect(get_provider(agent), request_for(agent, HELLO)) == [
        TextDelta("hi"), Usage(12, 1), Stop("end_turn", "stop"),
    ]
    assert fake_openai.requests[0].headers["authorization"] == "Bearer sk-agent"
