from django.contrib import admin
from django.db import models

from .inbound import KEPT_NOT_SENT
from .models import ChannelEndpoint, InboundEvent


@admin.register(ChannelEndpoint)
class ChannelEndpointAdmin(admin.ModelAdmin):
    list_display = ("name", "adapter", "auth", "account", "api_base_url", "enabled", "webhook_path")
    list_filter = ("enabled", "auth", "adapter")
    search_fields = ("name", "account", "api_base_url")
    readonly_fields = ("webhook_path", "created", "updated")
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = (
        (None, {"fields": ("name", "webhook_path", "adapter", "account", "enabled")}),
        ("Incoming", {"fields": ("auth", "secret_env", "max_body_bytes")}),
        ("Replies", {"fields": ("api_base_url", "token_env")}),
        (None, {"fields": ("created", "updated")}),
    )

    @admin.display(description="Webhook path")
    def webhook_path(self, obj):
        return f"/hooks/{obj.name}/" if obj and obj.name else "-"


@admin.register(InboundEvent)
class InboundEventAdmin(admin.ModelAdmin):
    list_display = ("received", "endpoint", "update_id", "account", "peer", "agent", "outcome", "delivery_attempts")
    list_filter = ("status", "endpoint", "agent")
    search_fields = ("update_id", "peer", "account", "session_key", "run_id", "error")
    date_hierarchy = "received"
    readonly_fields = [f.name for f in InboundEvent._meta.fields]

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
