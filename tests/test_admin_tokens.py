"""The API token admin: a new token is shown exactly once and only its hash is stored."""

import pytest
from django.db import connection

from exoclaw.models import TOKEN_PREFIX, ApiToken, hash_token

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/exoclaw/apitoken/add/"


def token_form(**overrides) -> dict:
    data = {"name": "ci bot", "scopes": ["chat", "sessions:read"], "expires_at_0": "", "expires_at_1": "",
            "enabled": "on", "_save": "Save"}
    return data | overrides


def every_value_in_the_database() -> str:
    """Every row of every table, as text: what a leaked database would reveal."""
    with connection.cursor() as cursor:
        dump = []
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f'SELECT * FROM "{table}"')
            dump.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(dump)


def create_token(admin_client, **overrides):
    response = admin_client.post(ADD_URL, token_form(**overrides))
    assert response.status_code == 200, response
    token = ApiToken.objects.get(name=overrides.get("name", "ci bot"))
    return response, token, response.context["raw_token"]


def test_add_form_offers_every_scope_as_a_checkbox(admin_client):
    page = admin_client.get(ADD_URL).content.decode()
    for scope in ApiToken.Scope:
        assert f'type="checkbox" name="scopes" value="{scope.value}"' in page
    assert "shown once" in page


def test_a_new_token_is_shown_once_and_stored_hashed(admin_client):
    response, token, raw = create_token(admin_client)
    page = response.content.decode()
    assert raw.startswith(TOKEN_PREFIX) and len(raw) > 40
    assert f'value="{raw}"' in page and "only time the token is shown" in page
    assert token.token_hash == hash_token(raw) and token.prefix == raw[:10]
    assert token.scopes == ["chat", "sessions:read"] and token.enabled
    assert raw not in every_value_in_the_database()
    assert all(raw not in morsel.value for morsel in response.cookies.values())
    for url in ("/admin/exoclaw/apitoken/", f"/admin/exoclaw/apitoken/{token.pk}/change/"):
        later = admin_client.get(url).content.decode()
        assert raw not in later and token.token_hash not in later
        assert token.prefix in later


def test_two_tokens_are_different(admin_client):
    *_, first = create_token(admin_client, name="one")
    *_, second = create_token(admin_client, name="two")
    assert first != second


def test_a_token_needs_a_scope(admin_client):
    response = admin_client.post(ADD_URL, token_form(scopes=[]))
    assert response.context["adminform"].form.errors["scopes"] == [
        "Pick at least one scope: a token without scopes can do nothing."
    ]
    assert not ApiToken.objects.exists()


def test_an_unknown_scope_is_refused(admin_client):
    response = admin_client.post(ADD_URL, token_form(scopes=["root"]))
    assert "Select a valid choice. root is not one of the available choices." in (
        response.context["adminform"].form.errors["scopes"]
    )


def test_editing_a_token_keeps_its_hash_and_changes_its_scopes_and_expiry(admin_client):
    _, token, raw = create_token(admin_client)
    response = admin_client.post(
        f"/admin/exoclaw/apitoken/{token.pk}/change/",
        token_form(scopes=["admin"], expires_at_0="2030-01-31", expires_at_1="12:00:00"),
    )
    assert response.status_code == 302
    token.refresh_from_db()
    assert token.scopes == ["admin"] and token.token_hash == hash_token(raw)
    assert token.expires_at.isoformat() == "2030-01-31T12:00:00+00:00"


def test_the_revoke_action_disables_tokens(admin_client):
    _, token, _ = create_token(admin_client)
    response = admin_client.post(
        "/admin/exoclaw/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}, follow=True
    )
    assert "Revoked 1 token(s)." in response.content.decode()
    token.refresh_from_db()
    assert not token.enabled
    assert "revoked" in admin_client.get("/admin/exoclaw/apitoken/").content.decode()


def test_sending_the_add_form_again_does_not_make_a_second_token(admin_client):
    page = admin_client.get(ADD_URL).content.decode()
    once = page.split('name="once" value="', 1)[1].split('"', 1)[0]
    assert len(once) >= 16
    response, token, raw = create_token(admin_client, once=once)
    again = admin_client.post(ADD_URL, token_form(once=once), follow=True)
    assert ApiToken.objects.count() == 1
    assert again.redirect_chain == [(f"/admin/exoclaw/apitoken/{token.pk}/change/", 302)]
    text = again.content.decode()
    assert "no second token was made" in text and raw not in text
    # A new form has a new id and makes a new token.
    fresh = admin_client.get(ADD_URL).content.decode().split('name="once" value="', 1)[1].split('"', 1)[0]
    assert fresh != once
    create_token(admin_client, name="second", once=fresh)
    assert ApiToken.objects.count() == 2
