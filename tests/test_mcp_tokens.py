"""The `tools` scope and the plugins permission of API tokens, which decide what /mcp offers."""

import io

import pytest
from django.core.management import call_command

from exoclaw.gateway.auth import token_principal
from exoclaw.models import ApiToken
from mcp_api.auth import sees_plugin

pytestmark = pytest.mark.django_db


def test_createtoken_stores_the_tools_scope_and_the_plugins_it_may_see():
    call_command("createtoken", "desk", "--scope", "tools", "--plugin", "calc", "--plugin", "echo",
                 stdout=io.StringIO(), stderr=io.StringIO())
    row = ApiToken.objects.get(name="desk")
    assert (row.scopes, row.plugins) == (["tools"], ["calc", "echo"])
    principal = token_principal(row)
    assert principal.allows("tools") and principal.plugins == {"calc", "echo"}
    assert sees_plugin(principal, "calc") and not sees_plugin(principal, "http_get")


def test_a_star_or_admin_sees_every_plugin_and_an_empty_list_none():
    every = token_principal(ApiToken(name="a", scopes=["tools"], plugins=["*"]))
    admin = token_principal(ApiToken(name="b", scopes=["admin"]))
    none = token_principal(ApiToken(name="c", scopes=["tools"]))
    assert sees_plugin(every, "anything") and sees_plugin(admin, "anything")
    assert not sees_plugin(none, "calc")


def test_the_admin_form_edits_the_plugins_as_a_list(admin_client):
    page = admin_client.get("/admin/exoclaw/apitoken/add/")
    assert 'name="plugins"' in page.content.decode()
    assert "tools: list and call" in page.content.decode()
