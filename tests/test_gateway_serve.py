"""`manage.py serve`: it refuses to expose an unauthenticated gateway and passes the gateway's limits to daphne."""

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import override_settings

from exoclaw.management.commands.serve import daphne_args, refuse_unauthenticated_bind
from exoclaw.models import ApiToken

pytestmark = pytest.mark.django_db


@override_settings(EXOCLAW_TOKEN="")
def test_serve_refuses_a_public_address_without_any_token():
    with pytest.raises(CommandError, match=r"Refusing to listen on 0\.0\.0\.0:7299 without authentication"):
        call_command("serve", bind="0.0.0.0:7299")


@override_settings(EXOCLAW_TOKEN="")
def test_a_disabled_token_does_not_count_as_authentication():
    row = ApiToken(name="off", enabled=False)
    row.set_new_token()
    row.save()
    with pytest.raises(CommandError, match="Refusing"):
        refuse_unauthenticated_bind("192.0.2.10", 7200)


@override_settings(EXOCLAW_TOKEN="")
def test_an_enabled_api_token_allows_a_public_address():
    row = ApiToken(name="on")
    row.set_new_token()
    row.save()
    refuse_unauthenticated_bind("0.0.0.0", 7200)


@override_settings(EXOCLAW_TOKEN="exo_configured")
def test_exoclaw_token_alone_is_not_authentication_until_bootstrap_stored_it():
    with pytest.raises(CommandError, match="Refusing"):
        refuse_unauthenticated_bind("::", 7200)
    call_command("bootstrap", stdout=io.StringIO(), stderr=io.StringIO())
    refuse_unauthenticated_bind("::", 7200)


@override_settings(EXOCLAW_TOKEN="")
@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_token(host):
    refuse_unauthenticated_bind(host, 7200)


def test_serve_rejects_a_malformed_bind_address_with_a_clear_message():
    with pytest.raises(CommandError, match="HOST:PORT"):
        call_command("serve", bind="localhost")


@override_settings(GATEWAY_PING_INTERVAL=7, GATEWAY_PING_TIMEOUT=9, GATEWAY_MAX_FRAME_BYTES=1000)
def test_daphne_gets_the_ping_settings_and_a_transport_cap_above_the_frame_limit():
    args = daphne_args("127.0.0.1", 7201)
    options = dict(zip(args[:-1:2], args[1:-1:2]))
    assert options["--ping-interval"] == "7" and options["--ping-timeout"] == "9"
    assert options["--websocket-max-message-size"] == "4000" and options["-p"] == "7201"
    assert args[-1] == "exoclaw.asgi:application"
