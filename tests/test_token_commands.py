"""`createtoken` and `revoketoken`: a token made on the command line, printed once, alone on stdout."""

import io

import pytest
from django.core.management import CommandError, call_command

from exoclaw.models import ApiToken, hash_token

pytestmark = pytest.mark.django_db


def create(*args) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("createtoken", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_createtoken_prints_only_the_new_token_and_stores_only_its_hash():
    out, err = create("alice-laptop", "--scope", "chat", "--scope", "sessions:read", "--channel", "telegram",
                      "--agent", "helper", "--expires", "30d")
    raw = out.strip()
    assert out == raw + "\n" and raw.startswith("exo_"), "stdout is the token alone"
    row = ApiToken.objects.get(name="alice-laptop")
    assert row.token_hash == hash_token(raw) and raw not in err
    assert (row.scopes, row.channels, row.agents) == (["chat", "sessions:read"], ["telegram"], ["helper"])
    assert row.expires_at is not None and "until" in err


@pytest.mark.parametrize("args,message", [
    (["x", "--scope", "chat", "--expires", "a month"], "--expires: not a duration"),
    (["x", "--scope", "chat", "--expires", "99999999999d"], "longer than any date"),
])
def test_createtoken_explains_a_bad_expiry(args, message):
    with pytest.raises(CommandError, match=message):
        create(*args)
    assert not ApiToken.objects.exists()


def test_createtoken_refuses_a_name_in_use():
    create("dup", "--scope", "chat")
    with pytest.raises(CommandError, match="a token named 'dup' exists already"):
        create("dup", "--scope", "admin")
    assert ApiToken.objects.get(name="dup").scopes == ["chat"]


def test_revoketoken_disables_the_token_and_names_the_known_ones_on_a_typo():
    create("bob", "--scope", "chat")
    call_command("revoketoken", "bob", stderr=io.StringIO())
    assert ApiToken.objects.get(name="bob").enabled is False
    with pytest.raises(CommandError, match=r"no token named 'bobb' \(tokens: bob\)"):
        call_command("revoketoken", "bobb", stderr=io.StringIO())
