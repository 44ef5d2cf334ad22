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


def test_a_reply_kept_by_a_channel_without_api_base_url_is_shown_as_kept_not_sent(staff_client, telegram_endpoint):
    from webhooks.inbound import KEPT_NOT_SENT

    InboundEvent.objects.create(endpoint=telegram_endpoint, update_id="78", peer="777002", status="undelivered",
                                error=KEPT_NOT_SENT)
    page = staff_client.get("/admin/webhooks/inboundevent/").content.decode()
    assert "Kept, not sent (the channel has no api_base_url)" in page
    assert "Reply could not be delivered" not in page.split("<tbody>")[1].split("</tbody>")[0]


def test_pairings_are_listed_and_approved_or_revoked_with_admin_actions(staff_client, telegram_endpoint):
    from webhooks.models import Pairing

    pending = Pairing.objects.create(endpoint=telegram_endpoint, sender="1001", code="K7QX-M2PD")
    other = Pairing.objects.create(endpoint=telegram_endpoint, sender="1002", code="ABCD-EFGH")
    page = staff_client.get("/admin/webhooks/pairing/", {"status__exact": "pending"}).content.decode()
    assert "K7QX-M2PD" in page and "ABCD-EFGH" in page and "Pending: waiting for an operator" in page
    assert "K7QX-M2PD" in staff_client.get("/admin/webhooks/pairing/", {"q": "1001"}).content.decode()
    response = staff_client.post(
        "/admin/webhooks/pairing/", {"action": "approve", "_selected_action": [pending.pk]}, follow=True
    )
    assert "Approved 1 pairing(s)." in response.content.decode()
    pending.refresh_from_db()
    assert (pending.status, pending.decided_by) == ("approved", "admin") and pending.decided is not None
    staff_client.post("/admin/webhooks/pairing/", {"action": "revoke", "_selected_action": [other.pk]})
    other.refresh_from_db()
    assert other.status == "revoked"
    assert staff_client.get("/admin/webhooks/pairing/add/").status_code == 403


def test_refused_messages_are_visible_in_the_inbound_events_and_reply_refs_never_are(staff_client, telegram_endpoint):
    refused = InboundEvent.objects.create(
        endpoint=telegram_endpoint, update_id="78", peer="-100123", sender="1002", status="refused",
        error="sender 1002 is not on the allowlist", reply_ref="interaction-token-secret",
    )
    page = staff_client.get("/admin/webhooks/inboundevent/", {"status__exact": "refused"}).content.decode()
    assert "Refused: the sender may not talk to this bot" in page and "1002" in page
    detail = staff_client.get(f"/admin/webhooks/inboundevent/{refused.pk}/change/").content.decode()
    assert "sender 1002 is not on the allowlist" in detail
    assert "interaction-token-secret" not in detail
    assert "1002" in staff_client.get("/admin/webhooks/inboundevent/", {"q": "1002"}).content.decode()


def test_the_change_form_shows_the_sender_policy_and_allowed_senders_one_per_line(staff_client, telegram_endpoint):
    telegram_endpoint.sender_policy = "allowlist"
    telegram_endpoint.allowed_senders = ["1001", "1002"]
    telegram_endpoint.save()
    page = staff_client.get(f"/admin/webhooks/channelendpoint/{telegram_endpoint.pk}/change/").content.decode()
    assert "Who may talk to the bot" in page
    assert "\n1001\n1002</textarea>" in page
