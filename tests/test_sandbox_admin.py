"""The Plugin admin: add and edit with grants inline, discovered tools shown, secrets never shown; the grant list."""

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile

from agents.models import Agent
from sandbox.models import CapabilityGrant, HttpSecret, Plugin
from tests.sandbox_fixtures import spec, wasm_path


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("root", "", "pw")
    client.force_login(user)
    return client


def plugin_form(name="calc", grants=(), **fields):
    data = {
        "name": name,
        "version": "1.0",
        "description": "",
        "enabled": "on",
        "wasm_path": str(wasm_path(name)),
        "sha256": "",
        "config": "{}",
        "declared_tools": "[]",
        "grants-TOTAL_FORMS": str(len(grants)),
        "grants-INITIAL_FORMS": "0",
        "grants-MIN_NUM_FORMS": "0",
        "grants-MAX_NUM_FORMS": "1000",
    }
    for i, grant in enumerate(grants):
        defaults = {
            "agent": "",
            "allowed_hosts": "[]",
            "allowed_paths": "[]",
            "memory_mb": "16",
            "timeout_ms": "5000",
            "max_concurrency": "4",
            "max_http_response_bytes": "1048576",
            "max_output_bytes": "1048576",
            "config": "{}",
            "secret_env": "{}",
            "http_requests_per_call": "20",
            "http_requests_per_minute": "120",
        }
        data.update({f"grants-{i}-{key}": value for key, value in {**defaults, **grant}.items()})
    data.update(fields)
    return data


def test_changelist_and_add_page_render(admin_client):
    Plugin.objects.create(name="echo", wasm_path=str(wasm_path("echo")), abi="exoclaw", tools=[{"name": "echo"}])
    changelist = admin_client.get("/admin/sandbox/plugin/")
    assert changelist.status_code == 200 and b"echo" in changelist.content
    add = admin_client.get("/admin/sandbox/plugin/add/")
    assert add.status_code == 200 and b"allowed_hosts" in add.content


def test_adding_a_plugin_with_a_grant_discovers_its_tools(admin_client):
    response = admin_client.post(
        "/admin/sandbox/plugin/add/", plugin_form("calc", grants=[{"allowed_hosts": '["api.example.com"]', "timeout_ms": "800"}])
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    plugin = Plugin.objects.get(name="calc")
    assert plugin.abi == "exoclaw" and plugin.tools[0]["name"] == "calc"
    assert plugin.sha256 == spec("calc").sha256
    grant = plugin.grants.get()
    assert (grant.allowed_hosts, grant.timeout_ms, grant.agent) == (["api.example.com"], 800, None)
    page = admin_client.get(f"/admin/sandbox/plugin/{plugin.pk}/change/")
    assert b"<code>calc.calc</code>" in page.content and b"Evaluate an arithmetic expression" in page.content


def test_uploading_a_wasm_file_works(admin_client):
    upload = SimpleUploadedFile("mcp_text.wasm", wasm_path("mcp_text").read_bytes(), "application/wasm")
    response = admin_client.post("/admin/sandbox/plugin/add/", {**plugin_form("mcp_text", wasm_path=""), "wasm_file": upload})
    assert response.status_code == 302, response.content.decode()[:2000]
    plugin = Plugin.objects.get(name="mcp_text")
    assert plugin.abi == "mcp" and plugin.read_wasm() == wasm_path("mcp_text").read_bytes()


def test_an_invalid_grant_is_refused_with_its_message(admin_client):
    response = admin_client.post(
        "/admin/sandbox/plugin/add/", plugin_form("calc", grants=[{"allowed_hosts": '["https://api.example.com/path"]'}])
    )
    assert response.status_code == 200
    assert "give a host (with an optional scheme and port) without a path" in response.content.decode()
    assert not Plugin.objects.exists()


def test_a_grant_for_a_missing_directory_is_refused(admin_client):
    response = admin_client.post(
        "/admin/sandbox/plugin/add/",
        plugin_form("calc", grants=[{"allowed_paths": '[{"host": "/no/such/dir", "guest": "/data"}]'}]),
    )
    assert "Not a directory on this server: /no/such/dir." in response.content.decode()


def test_a_second_default_grant_is_refused(admin_client):
    plugin = Plugin(name="calc", wasm_path=str(wasm_path("calc")))
    plugin.full_clean()
    plugin.save()
    CapabilityGrant.objects.create(plugin=plugin)
    form = plugin_form("calc", grants=[{}])
    response = admin_client.post(f"/admin/sandbox/plugin/{plugin.pk}/change/", form)
    assert "This plugin already has a grant for every agent: edit that one instead." in response.content.decode()
    assert plugin.grants.count() == 1
    two_defaults = admin_client.post("/admin/sandbox/plugin/add/", plugin_form("echo", grants=[{}, {}]))
    assert "already has a grant for every agent" in two_defaults.content.decode()
    assert not Plugin.objects.filter(name="echo").exists()


def test_a_sha256_mismatch_is_refused(admin_client):
    response = admin_client.post("/admin/sandbox/plugin/add/", plugin_form("calc", sha256="0" * 64))
    assert response.status_code == 200
    assert f"The .wasm&#x27;s sha256 is {spec('calc').sha256}, not {'0' * 64}" in response.content.decode()
    assert not Plugin.objects.exists()


def test_a_lying_plugin_is_refused_with_the_discovery_error(admin_client):
    response = admin_client.post("/admin/sandbox/plugin/add/", plugin_form("liar"))
    assert "Tool discovery failed: invalid_output: describe announces mcp-style tools" in response.content.decode()


def test_secret_values_are_never_shown(admin_client, monkeypatch):
    monkeypatch.setenv("EXOCLAW_TEST_WEATHER_KEY", "value-that-must-not-leak")
    plugin = Plugin(name="calc", wasm_path=str(wasm_path("calc")))
    plugin.full_clean()
    plugin.save()
    CapabilityGrant.objects.create(plugin=plugin, secret_env={"api_key": "EXOCLAW_TEST_WEATHER_KEY", "other": "EXOCLAW_UNSET_VAR"})
    page = admin_client.get(f"/admin/sandbox/plugin/{plugin.pk}/change/").content.decode()
    assert "EXOCLAW_TEST_WEATHER_KEY</code> (set), enters the sandbox: the plugin holds the value" in page
    assert "EXOCLAW_UNSET_VAR</code> (NOT SET" in page
    assert "value-that-must-not-leak" not in page


def test_rediscover_action_updates_tools(admin_client):
    plugin = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")), tools=[])
    response = admin_client.post(
        "/admin/sandbox/plugin/", {"action": "rediscover_tools", "_selected_action": [plugin.pk]}, follow=True
    )
    assert [str(m) for m in response.context["messages"]] == ["calc: calc"]
    plugin.refresh_from_db()
    assert plugin.abi == "exoclaw" and plugin.tools[0]["name"] == "calc"


def grant_form(plugin, secrets=(), **fields):
    """The grant page's form, with its HTTP secrets inline (all new)."""
    data = {
        "plugin": str(plugin.pk), "agent": "", "allowed_hosts": '["api.example.com"]', "allowed_paths": "[]",
        "memory_mb": "32", "timeout_ms": "2000", "max_concurrency": "2", "max_http_response_bytes": "1048576",
        "max_output_bytes": "1048576", "config": "{}", "secret_env": "{}",
        "http_requests_per_call": "20", "http_requests_per_minute": "120",
        "http_secrets-TOTAL_FORMS": str(len(secrets)), "http_secrets-INITIAL_FORMS": "0",
        "http_secrets-MIN_NUM_FORMS": "0", "http_secrets-MAX_NUM_FORMS": "1000", **fields,
    }
    for i, secret in enumerate(secrets):
        defaults = {"host": "https://api.example.com", "header": "", "query": "", "format": "{secret}", "secret_env": "K"}
        data.update({f"http_secrets-{i}-{key}": value for key, value in {**defaults, **secret}.items()})
    return data


def test_the_grant_list_shows_every_grant_with_filters_and_search(admin_client):
    calc = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")))
    echo = Plugin.objects.create(name="echo", wasm_path=str(wasm_path("echo")))
    CapabilityGrant.objects.create(plugin=calc, allowed_hosts=["api.example.com"], memory_mb=32)
    CapabilityGrant.objects.create(plugin=echo, agent=Agent.objects.create(name="helper", provider="echo"))
    page = admin_client.get("/admin/sandbox/capabilitygrant/").content.decode()
    assert "calc for every agent" in page and "echo for helper" in page and "api.example.com" in page
    assert 'data-filter-title="plugin"' in page and 'data-filter-title="agent"' in page
    found = admin_client.get("/admin/sandbox/capabilitygrant/", {"q": "api.example"}).content.decode()
    assert "calc for every agent" in found and "echo for helper" not in found
    by_agent = admin_client.get("/admin/sandbox/capabilitygrant/", {"agent__isnull": "True"}).content.decode()
    assert "calc for every agent" in by_agent and "echo for helper" not in by_agent


def test_a_grant_added_on_its_own_page_saves_and_a_second_default_is_refused(admin_client):
    plugin = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")))
    response = admin_client.post("/admin/sandbox/capabilitygrant/add/", grant_form(plugin))
    assert response.status_code == 302, response.content.decode()
    grant = CapabilityGrant.objects.get(plugin=plugin)
    assert grant.allowed_hosts == ["api.example.com"] and grant.memory_mb == 32
    again = admin_client.post("/admin/sandbox/capabilitygrant/add/", grant_form(plugin)).content.decode()
    assert "This plugin already has a grant for every agent." in again
    bad = admin_client.post("/admin/sandbox/capabilitygrant/add/", grant_form(plugin, allowed_hosts='["http://x/"]'))
    assert "without a path" in bad.content.decode()


def test_the_grant_page_never_shows_secret_values(admin_client, monkeypatch):
    monkeypatch.setenv("EXOCLAW_TEST_WEATHER_KEY", "value-that-must-not-leak")
    plugin = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")))
    grant = CapabilityGrant.objects.create(plugin=plugin, secret_env={"api_key": "EXOCLAW_TEST_WEATHER_KEY"})
    page = admin_client.get(f"/admin/sandbox/capabilitygrant/{grant.pk}/change/").content.decode()
    assert "EXOCLAW_TEST_WEATHER_KEY</code> (set)" in page and "value-that-must-not-leak" not in page


BEARER = {"host": "https://api.example.com", "header": "Authorization", "format": "Bearer {secret}",
          "secret_env": "EXOCLAW_TEST_WEATHER_KEY"}


def test_an_http_secret_added_on_the_grant_page_is_saved_and_shown_by_name_never_by_value(admin_client, monkeypatch):
    monkeypatch.setenv("EXOCLAW_TEST_WEATHER_KEY", "value-that-must-not-leak")
    plugin = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")))
    grant = CapabilityGrant.objects.create(plugin=plugin, allowed_hosts=["api.example.com"])
    change = f"/admin/sandbox/capabilitygrant/{grant.pk}/change/"
    response = admin_client.post(change, grant_form(plugin, secrets=[BEARER]))
    assert response.status_code == 302, response.content.decode()
    assert [s.as_table() for s in grant.http_secrets.all()] == [BEARER]

    status = ("HTTP to https://api.example.com: <code>EXOCLAW_TEST_WEATHER_KEY</code> (set), added by exoclaw as header "
              "Authorization; the plugin never sees it")
    grant_page = admin_client.get(change).content.decode()
    assert status in grant_page and 'value="EXOCLAW_TEST_WEATHER_KEY"' in grant_page
    # The plugin's page lists the grant's secrets and sends the operator to the grant's page to edit them.
    plugin_page = admin_client.get(f"/admin/sandbox/plugin/{plugin.pk}/change/").content.decode()
    assert status in plugin_page and f'href="{change}#http_secrets-group"' in plugin_page
    assert 'name="grants-0-http_secrets' not in plugin_page
    for url in (change, "/admin/sandbox/capabilitygrant/", f"/admin/sandbox/plugin/{plugin.pk}/change/",
                "/admin/sandbox/plugin/", "/admin/sandbox/capabilitygrant/add/", "/admin/sandbox/plugin/add/"):
        page = admin_client.get(url)
        assert page.status_code == 200 and "value-that-must-not-leak" not in page.content.decode(), url


def test_a_new_grant_on_the_plugin_page_says_where_its_http_secrets_are_added(admin_client):
    page = admin_client.get("/admin/sandbox/plugin/add/").content.decode()
    assert "Save the grant first, then add HTTP secrets on its own page." in page


@pytest.mark.parametrize("secret, message", [
    ({"header": "X-Key", "query": "key"}, "give either header (e.g. Authorization) or query (e.g. appid), not both"),
    ({}, "give either header (e.g. Authorization) or query (e.g. appid), not both and not neither"),
    ({"host": "*.example.com", "query": "key"}, "give the one host the secret belongs to (no wildcard)"),
    ({"host": "https://api.example.com/v1", "query": "key"}, "without a path"),
    ({"header": "X Key"}, "is not a header name"),
    ({"query": "a&b"}, "is not a plain parameter name"),
    ({"header": "Authorization", "format": "Bearer"}, "format must contain {secret} once"),
    ({"query": "key", "secret_env": "sk-live-123"}, "secret_env: give the name of an environment variable, not its value"),
    ({"query": "key", "secret_env": ""}, "This field is required."),
])
def test_an_http_secret_the_sandbox_would_refuse_is_refused_with_its_reason(admin_client, secret, message):
    plugin = Plugin.objects.create(name="calc", wasm_path=str(wasm_path("calc")))
    grant = CapabilityGrant.objects.create(plugin=plugin)
    response = admin_client.post(f"/admin/sandbox/capabilitygrant/{grant.pk}/change/", grant_form(plugin, secrets=[secret]))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not HttpSecret.objects.exists()
