"""The channel endpoint admin and the inbound event log."""

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from sandbox.models import Plugin
from tests.webhooks_fixtures import adapter_plugin
from webhooks.models import ChannelEndpoint, InboundEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    client.force_login(User.objects.create_superuser("admin", "a@example.com", "pw"))
    return client


@pytest.fixture
def telegram_endpoint(monkeypatch):
    monkeypatch.setenv("TG_WEBHOOK_SECRET", "super-secret-value")
    monkeypatch.setenv("TG_BOT_TOKEN", "123456:very-secret-token")
    return ChannelEndpoint.objects.create(
        name="telegram",
        adapter=adapter_plugin("telegram"),
        auth=ChannelEndpoint.Auth.TELEGRAM,
        secret_env="TG_WEBHOOK_SECRET",
        token_env="TG_BOT_TOKEN",
        api_base_url="https://api.telegram.org",
    )


def test_changelist_and_change_form_show_variable_names_never_secrets(staff_client, telegram_endpoint):
    for url in ("/admin/webhooks/channelendpoint/", f"/admin/webhooks/channelendpoint/{telegram_endpoint.pk}/change/"):
        page = staff_client.get(url).content.decode()
        assert "super-secret-value" not in page and "very-secret-token" not in page
    page = staff_client.get(f"/admin/webhooks/channelendpoint/{telegram_endpoint.pk}/change/").content.decode()
    assert "TG_WEBHOOK_SECRET" in page and "TG_BOT_TOKEN" in page and "/hooks/telegram/" in page


def test_the_add_form_saves_an_endpoint(staff_client):
    plugin = adapter_plugin("generic")
    response = staff_client.post(
        "/admin/webhooks/channelendpoint/add/",
        {
            "name": "acme",
            "adapter": plugin.pk,
            "auth": "hmac_sha256",
            "secret_env": "ACME_SECRET",
            "account": "",
            "api_base_url": "http://127.0.0.1:8099/replies",
            "token_env": "",
            "max_body_bytes": 65536,
            "sender_policy": "allowlist",
            "allowed_senders": "u-1\nu-2, u-3\n",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    acme = ChannelEndpoint.objects.get(name="acme")
    assert acme.api_base_url == "http://127.0.0.1:8099/replies"
    assert (acme.sender_policy, acme.allowed_senders) == ("allowlist", ["u-1", "u-2", "u-3"])


def test_a_secret_value_in_place_of_a_variable_name_is_refused_with_the_reason(staff_client):
    plugin = adapter_plugin("generic")
    response = staff_client.post(
        "/admin/webhooks/channelendpoint/add/",
        {"name": "acme", "adapter": plugin.pk, "auth": "hmac_sha256", "secret_env": "s3cr3t-value!", "max_body_bytes": 1,
         "sender_policy": "pairing"},
    )
    assert response.status_code == 200
    assert "Give the name of an environment variable" in response.content.decode()
    assert not ChannelEndpoint.objects.exists()


def test_a_tool_plugin_cannot_be_a_channel_adapter():
    plugin = adapter_plugin("generic")
    plugin.abi = Plugin.Abi.EXOCLAW
    plugin.save()
    endpoint = ChannelEndpoint(name="x", adapter=plugin, secret_env="S")
    with pytest.raises(ValidationError, match="not a channel adapter"):
        endpoint.full_clean()


def test_inbound_events_are_listed_and_read_only(staff_client, telegram_endpoint):
    event = InboundEvent.objects.create(
        endpoint=telegram_endpoint, update_id="77", peer="777001", status="undelivered", error="HTTP 400: chat not found"
    )
    page = staff_client.get("/admin/webhooks/inboundevent/").content.decode()
    assert "777001" in page and "Reply could not be delivered" in page
    assert staff_client.get("/admin/webhooks/inboundevent/add/").status_code == 403
    detail = staff_client.get(f"/admin/webhooks/inboundevent/{event.pk}/change/").content.decode()
    assert "HTTP 400: chat not found" in detail
