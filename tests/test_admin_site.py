"""The admin's own look: exoclaw's header and titles, the session browser in the index and the side
navigation, labels with units, and number inputs wide enough for the values they hold."""

import re

import pytest
from django.contrib.admin import site
from django.contrib.staticfiles import finders
from django.urls import reverse

from exoclaw.admin_site import ExoclawAdminSite
from sandbox.models import CapabilityGrant, Plugin
from tests.sandbox_fixtures import wasm_path

pytestmark = pytest.mark.django_db


def test_the_admin_is_exoclaw_administration(admin_client):
    assert isinstance(site, ExoclawAdminSite)
    page = admin_client.get("/admin/").content.decode()
    assert "<title>Agents, routing, plugins, channels and sessions | exoclaw admin</title>" in page
    assert '<a href="/admin/">exoclaw administration</a>' in page
    assert "Django administration" not in page


def test_the_session_browser_is_in_the_index_and_the_side_navigation(admin_client):
    url = reverse("admin_sessions:list")
    index = admin_client.get("/admin/").content.decode()
    assert f'<a href="{url}">Sessions</a>' in index and "Session history" in index
    plugins = admin_client.get("/admin/sandbox/plugin/").content.decode()
    sidebar = plugins[plugins.index('id="nav-sidebar"'):]
    assert f'<a href="{url}">Sessions</a>' in sidebar


def test_limits_are_labelled_with_their_units_and_inputs_fit_their_values(admin_client):
    plugin = Plugin(name="echo", wasm_path=str(wasm_path("echo")))
    plugin.full_clean()
    plugin.save()
    grant = CapabilityGrant.objects.create(plugin=plugin)
    page = admin_client.get(f"/admin/sandbox/capabilitygrant/{grant.pk}/change/").content.decode()
    for label in ("Memory (MiB)", "Timeout (ms)", "Max HTTP response (bytes)", "Max output (bytes)"):
        assert f">{label}:</label>" in page, label
    assert re.search(r'<input type="number" name="max_output_bytes" value="1048576" class="vIntegerField"', page)
    assert "exoclaw/admin.css" in page
    css = open(finders.find("exoclaw/admin.css")).read()
    width = float(re.search(r"input\.vIntegerField[^{]*\{ width: ([\d.]+)em", css).group(1))
    assert width >= len("4294967295") + 1, "an input must show ten digits and its spinner"
    agent_page = admin_client.get("/admin/agents/agent/add/").content.decode()
    for label in ("Base URL", "API key env var", "Request timeout (s)"):
        assert f">{label}:</label>" in agent_page, label


def test_the_admin_shows_times_with_their_zone(admin_client):
    from agents.models import Agent

    agent = Agent.objects.create(name="timed")
    page = admin_client.get(f"/admin/agents/agent/{agent.pk}/change/").content.decode()
    assert re.search(r"[A-Z][a-z]{2}\.? \d{1,2}, \d{4}, \d{1,2}(:\d\d)? [ap]\.m\. UTC", page), "no time with its zone"
