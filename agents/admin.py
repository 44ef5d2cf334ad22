from django.contrib import admin, messages
from django.db import models
from django.db.models import Count
from django.urls import reverse
from django.utils.html import format_html

from .models import Agent


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "provider", "model", "tool_patterns", "busy_policy", "binding_count", "enabled"]
    list_filter = ["enabled", "provider", "busy_policy"]
    search_fields = ["name", "model", "system_prompt"]
    readonly_fields = ["created", "updated"]
    actions = ["enable", "disable"]
    # A base URL typed without a scheme means https (Django 6's default), never plain http.
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    fieldsets = [
        (None, {"fields": ["name", "enabled"]}),
        ("LLM", {"fields": ["provider", "model", "base_url", "api_key_env", "system_prompt"]}),
        (
            "Limits",
            {"fields": ["temperature", "max_tokens", "max_tool_rounds", "request_timeout", "context_messages"]},
        ),
        ("Tools and sessions", {"fields": ["tools", "busy_policy"]}),
        ("History", {"fields": ["created", "updated"], "classes": ["collapse"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_binding_count=Count("bindings"))

    @admin.display(description="tools")
    def tool_patterns(self, obj):
        return ", ".join(obj.tools) or "none"

    @admin.display(description="bindings", ordering="_binding_count")
    def binding_count(self, obj):
        url = reverse("admin:routing_binding_changelist") + f"?agent__id__exact={obj.pk}"
        return format_html('<a href="{}">{}</a>', url, obj._binding_count)

    # Row by row, not queryset.update(), so the routing cache hears about each change.
    @admin.action(description="Enable the selected agents")
    def enable(self, request, queryset):
        self._set_enabled(request, queryset, True)

    @admin.action(description="Disable the selected agents (their bindings stop matching)")
    def disable(self, request, queryset):
        self._set_enabled(request, queryset, False)

    def _set_enabled(self, request, queryset, enabled):
        changed = [a for a in queryset if a.enabled != enabled]
        for agent in changed:
            agent.enabled = enabled
            agent.save(update_fields=["enabled", "updated"])
        self.message_user(
            request, f"{'Enabled' if enabled else 'Disabled'} {len(changed)} agent(s).", messages.SUCCESS
        )
