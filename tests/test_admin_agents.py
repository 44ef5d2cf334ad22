"""The Agent admin through Django's test client."""

import pytest

from agents.models import Agent
from routing.models import Binding
from routing.resolver import NoRoute, resolve_route

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/agents/agent/add/"


def agent_form(**overrides) -> dict:
    data = {
        "name": "helper",
        "enabled": "on",
        "provider": "openai",
        "model": "gpt-4o",
        "base_url": "http://127.0.0.1:11434/v1",
        "api_key_env": "OLLAMA_KEY",
        "system_prompt": "Be brief.",
        "temperature": "0.3",
        "max_tokens": "512",
        "max_tool_rounds": "4",
        "request_timeout": "30",
        "context_messages": "20",
        "tools": '["calc", "http_get.fetch"]',
        "busy_policy": "reject",
        "_save": "Save",
    }
    return {k: v for k, v in (data | overrides).items() if v is not None}


def test_changelist_lists_agents_with_their_bindings(admin_client):
    agent = Agent.objects.create(name="demo", tools=["*"])
    Binding.objects.create(agent=agent)
    page = admin_client.get("/admin/agents/agent/").content.decode()
    assert "demo" in page
    assert f'href="/admin/routing/binding/?agent__id__exact={agent.pk}">1</a>' in page


def test_add_form_renders_and_saves(admin_client):
    assert admin_client.get(ADD_URL).status_code == 200
    response = admin_client.post(ADD_URL, agent_form())
    assert response.status_code == 302, response.context["adminform"].form.errors
    agent = Agent.objects.get(name="helper")
    assert (agent.provider, agent.model, agent.tools, agent.busy_policy, agent.temperature) == (
        "openai", "gpt-4o", ["calc", "http_get.fetch"], "reject", 0.3
    )


def test_change_form_renders(admin_client):
    agent = Agent.objects.create(name="demo")
    assert admin_client.get(f"/admin/agents/agent/{agent.pk}/change/").status_code == 200


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("tools", '["calc", "bad pattern!"]', "Not a tool pattern: bad pattern!"),
        ("tools", '{"calc": true}', "Give a list of strings"),
        ("api_key_env", "sk-live-123", "Give the name of an environment variable"),
        ("temperature", "2.5", "less than or equal to 2.0"),
        ("name", "has spaces", "Enter a valid “slug”"),
        ("provider", "gemini", "Select a valid choice"),
    ],
)
def test_invalid_input_is_refused_with_its_message(admin_client, field, value, message):
    response = admin_client.post(ADD_URL, agent_form(**{field: value}))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in " ".join(errors.get(field, []) + errors.get("__all__", [])), errors
    assert not Agent.objects.filter(name__in=["helper", "has spaces"]).exists()


def test_disable_action_takes_the_agents_bindings_out_of_routing(admin_client):
    agent = Agent.objects.create(name="demo")
    Binding.objects.create(agent=agent)
    assert resolve_route(channel="webchat").agent == "demo"
    response = admin_client.post(
        "/admin/agents/agent/", {"action": "disable", "_selected_action": [agent.pk]}, follow=True
    )
    assert "Disabled 1 agent(s)." in response.content.decode()
    with pytest.raises(NoRoute):
        resolve_route(channel="webchat")
    admin_client.post("/admin/agents/agent/", {"action": "enable", "_selected_action": [agent.pk]})
    assert resolve_route(channel="webchat").agent == "demo"


def test_a_base_url_without_a_scheme_becomes_https(admin_client):
    admin_client.post(ADD_URL, agent_form(base_url="llm.example.com/v1"))
    assert Agent.objects.get(name="helper").base_url == "https://llm.example.com/v1"
