from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.template.response import TemplateResponse
from django.urls import path, reverse

from agents.models import Agent
from common.routefields import MATCH_FIELDS

from .models import Binding
from .resolver import NoRoute, level_of, resolve_route


class TryRoutingForm(forms.Form):
    channel = forms.CharField(
        required=False,
        help_text="e.g. web (the web chat), cli (manage.py chat), or a channel endpoint's name: telegram, slack, discord",
    )
    account = forms.CharField(
        required=False,
        help_text="the bot or app on the channel: a Telegram bot's account, Slack's api_app_id, Discord's "
        "application_id; for a gateway client, its principal (token:alice)",
    )
    peer = forms.CharField(
        required=False,
        help_text="the user or chat: a Telegram chat id, a Slack channel and thread (C0123:1712345678.000100), "
        "a Discord channel id",
    )
    guild = forms.CharField(required=False, help_text="a server or guild: Discord's guild_id (none in a DM)")
    team = forms.CharField(required=False, help_text="a team or workspace: Slack's team_id")


@admin.register(Binding)
class BindingAdmin(admin.ModelAdmin):
    list_display = ["id", "level", "match_label", "agent", "note", "enabled"]
    list_display_links = ["id", "match_label"]
    list_filter = ["enabled", "agent", "channel"]
    search_fields = ["channel", "account", "peer", "guild", "team", "note", "agent__name"]
    list_select_related = ["agent"]
    readonly_fields = ["created", "updated"]
    actions = ["enable", "disable"]
    change_list_template = "admin/routing/binding/change_list.html"
    fieldsets = [
        (None, {"fields": ["agent", "enabled", "note"]}),
        (
            "Match",
            {
                "fields": list(MATCH_FIELDS),
                "description": "A message matches when every field filled in here equals the message's. "
                "Leave all empty for the default binding. Priority: peer > guild > team > account > "
                "channel > default; within a level the binding naming more fields wins.",
            },
        ),
        ("History", {"fields": ["created", "updated"], "classes": ["collapse"]}),
    ]

    @admin.display(description="level")
    def level(self, obj):
        return level_of(obj.match())

    @admin.display(description="match")
    def match_label(self, obj):
        return obj.match_label()

    def get_urls(self):
        return [
            path("try/", self.admin_site.admin_view(self.try_routing_view), name="routing_binding_try"),
        ] + super().get_urls()

    def try_routing_view(self, request):
        form = TryRoutingForm(request.GET or None)
        route = error = None
        if form.is_valid():
            try:
                route = resolve_route(**form.cleaned_data)
            except NoRoute as e:
                error = str(e)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Try routing",
            "form": form,
            "route": route,
            "error": error,
            "binding_url": route and reverse("admin:routing_binding_change", args=[route.binding_id]),
            "agent_url": route and self._agent_url(route.agent),
        }
        return TemplateResponse(request, "admin/routing/binding/try_routing.html", context)

    @staticmethod
    def _agent_url(name):
        pk = Agent.objects.filter(name=name).values_list("pk", flat=True).first()
        return pk and reverse("admin:agents_agent_change", args=[pk])

    # Row by row, not queryset.update(), so each row is validated and the routing cache hears about it.
    @admin.action(description="Enable the selected bindings")
    def enable(self, request, queryset):
        done = 0
        for binding in queryset.filter(enabled=False):
            binding.enabled = True
            try:
                binding.full_clean()
            except ValidationError as e:
                self.message_user(request, f"Binding #{binding.pk} stays disabled: {' '.join(e.messages)}",
                                  messages.ERROR)
                continue
            binding.save(update_fields=["enabled", "updated"])
            done += 1
        self.message_user(request, f"Enabled {done} binding(s).", messages.SUCCESS)

    @admin.action(description="Disable the selected bindings")
    def disable(self, request, queryset):
        rows = list(queryset.filter(enabled=True))
        for binding in rows:
            binding.enabled = False
            binding.save(update_fields=["enabled", "updated"])
        self.message_user(request, f"Disabled {len(rows)} binding(s).", messages.SUCCESS)
