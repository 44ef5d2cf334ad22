"""The Binding admin and its "Try routing" page through Django's test client."""

import pytest

from agents.models import Agent
from routing.models import Binding
from routing.resolver import resolve_route

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/routing/binding/add/"
TRY_URL = "/admin/routing/binding/try/"


@pytest.fixture
def demo(db):
    return Agent.objects.create(name="demo")


@pytest.fixture
def vip(db):
    return Agent.objects.create(name="vip")


def binding_form(agent, **fields) -> dict:
    data = {"agent": agent.pk, "enabled": "on", "note": "", "_save": "Save"}
    return data | {f: "" for f in ("channel", "account", "peer", "guild", "team")} | fields


def test_changelist_shows_level_match_and_a_try_routing_link(admin_client, demo):
    Binding.objects.create(agent=demo, peer="alice", channel="telegram")
    page = admin_client.get("/admin/routing/binding/").content.decode()
    assert f'href="{TRY_URL}"' in page
    assert "channel=telegram, peer=alice" in page
    assert "<td class=\"field-level\">peer</td>" in page


def test_add_form_renders_and_saves(admin_client, demo):
    assert admin_client.get(ADD_URL).status_code == 200
    response = admin_client.post(ADD_URL, binding_form(demo, channel="webchat", note="web users"))
    assert response.status_code == 302
    binding = Binding.objects.get()
    assert (binding.agent, binding.match(), binding.note) == (demo, {"channel": "webchat"}, "web users")
    assert admin_client.get(f"/admin/routing/binding/{binding.pk}/change/").status_code == 200


def test_a_duplicate_enabled_binding_is_refused_with_its_message(admin_client, demo, vip):
    first = Binding.objects.create(agent=demo, channel="webchat")
    response = admin_client.post(ADD_URL, binding_form(vip, channel="webchat"))
    assert response.status_code == 200
    assert response.context["adminform"].form.non_field_errors() == [
        f"The enabled binding #{first.pk} (channel=webchat → demo) already has this match. "
        "Disable or edit it first, or change this binding's fields."
    ]
    assert Binding.objects.count() == 1
    response = admin_client.post(ADD_URL, binding_form(vip, channel="webchat", enabled=""))
    assert response.status_code == 302
    assert Binding.objects.filter(enabled=False, agent=vip).exists()


def test_the_enable_action_refuses_a_duplicate_and_says_why(admin_client, demo, vip):
    Binding.objects.create(agent=demo, channel="webchat")
    spare = Binding.objects.create(agent=vip, channel="webchat", enabled=False)
    response = admin_client.post(
        "/admin/routing/binding/", {"action": "enable", "_selected_action": [spare.pk]}, follow=True
    )
    page = response.content.decode()
    assert f"Binding #{spare.pk} stays disabled: The enabled binding" in page
    spare.refresh_from_db()
    assert not spare.enabled


def test_an_admin_edit_changes_routing_at_once(admin_client, demo, vip):
    binding = Binding.objects.create(agent=demo)
    assert resolve_route(channel="webchat", peer="bob").agent == "demo"
    response = admin_client.post(f"/admin/routing/binding/{binding.pk}/change/", binding_form(vip))
    assert response.status_code == 302
    assert resolve_route(channel="webchat", peer="bob").agent == "vip"
    admin_client.post("/admin/routing/binding/", {"action": "disable", "_selected_action": [binding.pk]})
    response = admin_client.get(TRY_URL, {"channel": "webchat", "peer": "bob"})
    assert "No enabled binding matches this message" in response.content.decode()


def test_try_routing_shows_agent_binding_level_reason_and_session_key(admin_client, demo, vip):
    Binding.objects.create(agent=demo)
    vip_binding = Binding.objects.create(agent=vip, peer="alice", channel="telegram")
    page = admin_client.get(
        TRY_URL, {"channel": "telegram", "account": "bot1", "peer": "alice", "guild": "", "team": ""}
    ).content.decode()
    assert f'<a href="/admin/agents/agent/{vip.pk}/change/">vip</a>' in page
    assert f'<a href="/admin/routing/binding/{vip_binding.pk}/change/">#{vip_binding.pk}</a>' in page
    assert "<th>Level</th><td>peer</td>" in page
    assert f"binding #{vip_binding.pk} matched at the peer level (peer=alice, channel=telegram)" in page
    assert "<code>agent:vip:telegram:bot1:alice</code>" in page


def test_try_routing_says_clearly_when_nothing_matches(admin_client, vip):
    Binding.objects.create(agent=vip, peer="alice")
    page = admin_client.get(TRY_URL, {"channel": "webchat", "peer": "bob"}).content.decode()
    assert 'id="route-error"' in page and "there is no default binding" in page
    assert 'id="route-result"' not in page


def test_try_routing_shows_an_empty_form_before_the_first_query(admin_client):
    page = admin_client.get(TRY_URL).content.decode()
    assert all(f'name="{f}"' in page for f in ("channel", "account", "peer", "guild", "team"))
    assert 'id="route-result"' not in page and 'id="route-error"' not in page


def test_try_routing_needs_an_admin_login(client):
    response = client.get(TRY_URL)
    assert response.status_code == 302 and response["Location"].startswith("/admin/login/")


def test_try_routing_explains_that_a_guild_binding_wins_for_a_discord_servers_messages(admin_client, demo, vip):
    channel_binding = Binding.objects.create(agent=demo, channel="discord")
    guild_binding = Binding.objects.create(agent=vip, guild="1200000000000000001")
    message = {"channel": "discord", "account": "1100000000000000001", "peer": "1500000000000000001",
               "guild": "1200000000000000001", "team": ""}
    page = admin_client.get(TRY_URL, message).content.decode()
    assert "<th>Level</th><td>guild</td>" in page
    assert (f"binding #{guild_binding.pk} matched at the guild level (guild=1200000000000000001); "
            f"it outranks #{channel_binding.pk} (channel level), which matched too") in page
    assert "Discord&#x27;s guild_id" in page
    # A DM carries no guild: the channel binding answers it.
    dm = admin_client.get(TRY_URL, message | {"guild": ""}).content.decode()
    assert f"binding #{channel_binding.pk} matched at the channel level (channel=discord)" in dm


def test_try_routing_explains_that_a_team_binding_wins_for_a_slack_workspaces_messages(admin_client, demo, vip):
    app_binding = Binding.objects.create(agent=demo, channel="slack", account="A0APP0001")
    team_binding = Binding.objects.create(agent=vip, team="T0TEAM001")
    page = admin_client.get(TRY_URL, {"channel": "slack", "account": "A0APP0001", "peer": "C0GENERAL:1712345678.000100",
                                      "guild": "", "team": "T0TEAM001"}).content.decode()
    assert f'<a href="/admin/agents/agent/{vip.pk}/change/">vip</a>' in page
    assert (f"binding #{team_binding.pk} matched at the team level (team=T0TEAM001); "
            f"it outranks #{app_binding.pk} (account level), which matched too") in page
    assert "Slack&#x27;s team_id" in page
