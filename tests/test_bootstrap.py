"""The bootstrap command: the demo set-up, created once."""

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from agents.models import Agent
from exoclaw.models import ApiToken, hash_token
from routing.models import Binding
from routing.resolver import resolve_route

pytestmark = pytest.mark.django_db

TOKEN = "exo_bootstrap-token-for-tests-0123456789abcdef"


def bootstrap() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("bootstrap", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def counts() -> dict:
    return {m.__name__: m.objects.count() for m in (Agent, Binding, get_user_model(), ApiToken)}


def test_first_run_creates_the_demo_and_it_routes(monkeypatch):
    monkeypatch.delenv("EXOCLAW_ADMIN_PASSWORD", raising=False)
    out, err = bootstrap()
    assert "bootstrap: created agent 'demo' (echo provider)" in err
    assert "bootstrap: created the default binding → demo" in err
    lines = out.splitlines()
    assert lines[0].startswith("┌") and lines[-1].startswith("└") and len({len(line) for line in lines}) == 1, out
    password = re.search(r"│ created superuser 'admin', password: (\S+) +│", out).group(1)
    assert "│ sign in at http://127.0.0.1:7200/admin/ (the password is shown only this once)" in out
    assert "│ lost it? .venv/bin/python manage.py changepassword admin" in out
    assert len(password) >= 12
    assert get_user_model().objects.get(username="admin").check_password(password)
    assert Agent.objects.get(name="demo").provider == "echo"
    route = resolve_route(channel="web", peer="someone")
    assert (route.agent, route.level) == ("demo", "default")


def test_a_second_run_creates_nothing(monkeypatch, settings):
    settings.EXOCLAW_TOKEN = TOKEN
    monkeypatch.setenv("EXOCLAW_ADMIN_PASSWORD", "a-long-test-password")
    bootstrap()
    before = counts()
    out, err = bootstrap()
    assert counts() == before == {"Agent": 1, "Binding": 1, "User": 1, "ApiToken": 1}
    assert out == ""
    assert err.splitlines() == [
        "bootstrap: agent 'demo' exists, kept",
        "bootstrap: default binding exists (→ demo), kept",
        "bootstrap: a superuser exists, kept (its password is not changed; lost it? "
        ".venv/bin/python manage.py changepassword admin)",
        "bootstrap: API token 'EXOCLAW_TOKEN' matches EXOCLAW_TOKEN, kept",
    ]


def test_the_password_comes_from_the_environment_and_is_not_printed(monkeypatch):
    monkeypatch.setenv("EXOCLAW_ADMIN_PASSWORD", "a-long-test-password")
    out, _ = bootstrap()
    assert out.strip() == "created superuser 'admin', password: from EXOCLAW_ADMIN_PASSWORD"
    assert get_user_model().objects.get(username="admin").check_password("a-long-test-password")


def test_an_existing_default_binding_is_kept(monkeypatch):
    other = Agent.objects.create(name="main")
    Binding.objects.create(agent=other)
    bootstrap()
    assert list(Binding.objects.values_list("agent__name", flat=True)) == ["main"]


def test_exoclaw_token_is_stored_hashed_with_admin_scope(settings):
    settings.EXOCLAW_TOKEN = TOKEN
    bootstrap()
    token = ApiToken.objects.get()
    assert (token.name, token.token_hash, token.prefix, token.scopes, token.enabled) == (
        "EXOCLAW_TOKEN", hash_token(TOKEN), TOKEN[:10], ["admin"], True
    )
    assert not ApiToken.objects.filter(token_hash=TOKEN).exists()


def test_changing_exoclaw_token_replaces_the_old_one(settings):
    settings.EXOCLAW_TOKEN = TOKEN
    bootstrap()
    settings.EXOCLAW_TOKEN = TOKEN + "-rotated"
    _, err = bootstrap()
    assert "EXOCLAW_TOKEN changed" in err
    assert list(ApiToken.objects.values_list("token_hash", flat=True)) == [hash_token(TOKEN + "-rotated")]


def test_a_revoked_bootstrap_token_stays_revoked(settings):
    settings.EXOCLAW_TOKEN = TOKEN
    bootstrap()
    ApiToken.objects.update(enabled=False)
    _, err = bootstrap()
    assert "kept revoked" in err
    assert not ApiToken.objects.get().enabled


def test_an_unset_exoclaw_token_warns_about_the_old_row(settings):
    settings.EXOCLAW_TOKEN = TOKEN
    bootstrap()
    settings.EXOCLAW_TOKEN = ""
    _, err = bootstrap()
    assert "EXOCLAW_TOKEN is unset but the API token 'EXOCLAW_TOKEN' from an earlier run still works" in err
