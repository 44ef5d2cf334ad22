from django import forms
from django.contrib import admin, messages
from django.db import models

from common.forms import NameListField

from . import senders
from .inbound import KEPT_NOT_SENT
from .models import ChannelEndpoint, InboundEvent, Pairing


def _https_urls(field, **kwargs):
    # A URL typed without a scheme is https (the admin's formfield_overrides do not reach a form's own Meta).
    if isinstance(field, models.URLField):
        kwargs["assume_scheme"] = "https"
    return field.formfield(**kwargs)


class ChannelEndpointForm(forms.ModelForm):
    allowed_senders = NameListField(
        one_per_line=True,
        required=False,
        label="Allowed senders",
        help_text=ChannelEndpoint._meta.get_field("allowed_senders").help_text,
    )

    class Meta:
        model = ChannelEndpoint
        fields = "__all__"
        formfield_callback = _https_urls


@admin.register(ChannelEndpoint)
class ChannelEndpointAdmin(admin.ModelAdmin):
    form = ChannelEndpointForm
    list_display = ("name", "adapter", "auth", "sender_policy", "account", "api_base_url", "enabled", "webhook_path")
    list_filter = ("enabled", "auth", "sender_policy", "adapter")
    search_fields = ("name", "account", "api_base_url")
    readonly_fields = ("webhook_path", "created", "updated")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "webhook_path", "adapter", "account", "enabled")}),
        ("Incoming", {"fields": ("auth", "secret_env", "max_body_bytes")}),
        ("Who may talk to the bot", {"fields": ("sender_policy", "allowed_senders")}),
        ("Replies", {"fields": ("api_base_url", "token_env")}),
        (None, {"fields": ("created", "updated")}),
    )

    @admin.display(description="Webhook path")
    def webhook_path(self, obj):
        return f"/hooks/{obj.name}/" if obj and obj.name else "-"


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = (
        "received", "endpoint", "update_id", "account", "peer", "sender", "agent", "outcome", "delivery_attempts",
    )
    list_filter = ("status", "endpoint", "agent")
    search_fields = ("update_id", "peer", "sender", "account", "session_key", "run_id", "error")
    date_hierarchy = "received"
    # The reply reference is a platform credential (Discord's interaction token): never shown.
    exclude = ("reply_ref",)
    readonly_fields = [f.name for f in InboundEvent._meta.fields if f.name != "reply_ref"]

    def has_add_permission(self, request):
        return False

    @admin.display(description="Status", ordering="status")
    def outcome(self, obj):
        # A channel without api_base_url keeps its replies by design: not a delivery failure.
        if obj.status == InboundEvent.Status.UNDELIVERED and obj.error == KEPT_NOT_SENT:
            return "Kept, not sent (the channel has no api_base_url)"
        return obj.get_status_display()

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Pairing)
class PairingAdmin(admin.ModelAdmin):
    list_display = ("code", "endpoint", "sender", "status", "created", "decided", "decided_by")
    list_filter = ("status", "endpoint")
    search_fields = ("code", "sender")
    readonly_fields = ("endpoint", "sender", "code", "status", "created", "decided", "decided_by", "last_replied")
    actions = ("approve", "revoke")

    def has_add_permission(self, request):
        return False

    @admin.action(description="Approve the selected pairings (the senders may talk to the bot)")
    def approve(self, request, queryset):
        rows = list(queryset.exclude(status=Pairing.Status.APPROVED))
        for pairing in rows:
            senders.approve(pairing, request.user.get_username())
        self.message_user(request, f"Approved {len(rows)} pairing(s).", messages.SUCCESS)

    @admin.action(description="Revoke the selected pairings (the senders are refused without a reply)")
    def revoke(self, request, queryset):
        rows = list(queryset.exclude(status=Pairing.Status.REVOKED))
        for pairing in rows:
            senders.revoke(pairing, request.user.get_username())
        self.message_user(request, f"Revoked {len(rows)} pairing(s).", messages.SUCCESS)
