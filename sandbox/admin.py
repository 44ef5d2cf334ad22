import os

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.urls import reverse
from django.utils.html import format_html, format_html_join

from .models import CapabilityGrant, HttpSecret, Plugin


class GrantFormSet(BaseInlineFormSet):
    def clean(self):
        # The inline form leaves out `plugin`, so Django skips the model's unique constraints on it: check them here.
        super().clean()
        kept = [f for f in self.forms if f.cleaned_data and not f.cleaned_data.get("DELETE")]
        seen = set()
        if self.instance.pk:
            in_form = [f.instance.pk for f in self.forms if f.instance.pk]
            seen.update(self.instance.grants.exclude(pk__in=in_form).values_list("agent_id", flat=True))
        for form in kept:
            agent = form.cleaned_data.get("agent")
            key = agent.pk if agent else None
            if key in seen:
                raise ValidationError(
                    f"This plugin already has a grant for {'this agent' if agent else 'every agent'}"
                    f"{f' ({agent})' if agent else ''}: edit that one instead."
                )
            seen.add(key)


GRANT_FIELDS = [
    "agent",
    "allowed_hosts",
    "allowed_paths",
    ("memory_mb", "timeout_ms", "max_concurrency"),
    ("max_http_response_bytes", "max_output_bytes"),
    ("http_requests_per_call", "http_requests_per_minute"),
    "config",
    "secret_env",
    "secret_status",
]


class GrantSecrets:
    readonly_fields = ["secret_status"]

    @admin.display(description="Secrets")
    def secret_status(self, grant):
        # Only the variable names and whether they are set: a secret's value is never shown.
        def status(env_name):
            return "set" if env_name in os.environ else "NOT SET in the server's environment"

        config = (
            (f"config {key}", env_name, status(env_name), "enters the sandbox: the plugin holds the value")
            for key, env_name in sorted(grant.secret_env.items())
        )
        http = (
            (f"HTTP to {s.host}", s.secret_env, status(s.secret_env),
             f"added by exoclaw as {f'header {s.header}' if s.header else f'query {s.query}'}; the plugin never sees it")
            # An unsaved grant has no secrets yet (and cannot be asked for them).
            for s in (grant.http_secrets.all() if grant.pk else ())
        )
        rows = [*config, *http]
        if not rows:
            return "—"
        return format_html_join("", "<div>{}: <code>{}</code> ({}), {}</div>", rows)


class CapabilityGrantInline(GrantSecrets, admin.StackedInline):
    """A plugin's grants on its page. Their HTTP secrets are listed here and edited on the grant's own
    page, as the admin cannot nest one inline in another."""

    model = CapabilityGrant
    formset = GrantFormSet
    extra = 0
    fields = [*GRANT_FIELDS, "http_secrets_link"]
    readonly_fields = [*GrantSecrets.readonly_fields, "http_secrets_link"]
    show_change_link = True

    def get_queryset(self, request):
        # secret_status lists each grant's HTTP secrets: one query for all of them.
        return super().get_queryset(request).prefetch_related("http_secrets")

    @admin.display(description="HTTP secrets")
    def http_secrets_link(self, grant):
        if not grant.pk:
            return "Save the grant first, then add HTTP secrets on its own page."
        url = reverse("admin:sandbox_capabilitygrant_change", args=[grant.pk]) + "#http_secrets-group"
        return format_html('<a href="{}">Add or edit this grant\'s HTTP secrets on its own page</a>', url)


class HttpSecretInline(admin.TabularInline):
    model = HttpSecret
    extra = 0
    fields = ["host", "header", "query", "format", "secret_env"]
    # Plain inputs sized to what they hold: the admin's own text inputs are 20em each, and five of them
    # push the delete box off the page.
    sizes = {"host": 24, "header": 13, "query": 9, "format": 14, "secret_env": 16}

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        if db_field.name in self.sizes:
            kwargs["widget"] = forms.TextInput(attrs={"size": self.sizes[db_field.name]})
        return super().formfield_for_dbfield(db_field, request, **kwargs)


@admin.register(CapabilityGrant)
class CapabilityGrantAdmin(GrantSecrets, admin.ModelAdmin):
    """Every grant in one list, to see what each plugin may reach; they are also edited inline on their plugin."""

    list_display = ["__str__", "plugin", "agent", "host_list", "path_list", "memory_mb", "timeout_ms", "max_concurrency"]
    list_filter = ["plugin", "agent"]
    search_fields = ["plugin__name", "agent__name", "allowed_hosts", "allowed_paths"]
    list_select_related = ["plugin", "agent"]
    fields = ["plugin", *GRANT_FIELDS]
    inlines = [HttpSecretInline]

    @admin.display(description="hosts")
    def host_list(self, grant):
        return ", ".join(grant.allowed_hosts) or "none"

    @admin.display(description="paths")
    def path_list(self, grant):
        return ", ".join(f"{p['host']}→{p.get('guest', p['host'])}{' (ro)' if p.get('read_only') else ''}"
                         for p in grant.allowed_paths) or "none"


@admin.register(Plugin)
class PluginAdmin(admin.ModelAdmin):
    list_display = ["name", "abi", "tool_names", "wasi", "enabled", "short_sha256", "updated"]
    list_filter = ["abi", "enabled", "wasi"]
    search_fields = ["name", "description"]
    readonly_fields = ["abi", "discovered_tools", "created", "updated"]
    inlines = [CapabilityGrantInline]
    actions = ["rediscover_tools"]
    fieldsets = [
        (None, {"fields": ["name", "version", "description", "enabled"]}),
        ("WebAssembly", {"fields": ["wasm_file", "wasm_path", "sha256", "wasi", "config"]}),
        (
            "Tools",
            {
                "fields": ["abi", "discovered_tools", "declared_tools"],
                "description": "Discovered from the plugin's describe export each time the plugin is saved; "
                "declared tools are used only by plain plugins without describe.",
            },
        ),
        ("History", {"fields": ["created", "updated"], "classes": ["collapse"]}),
    ]

    @admin.display(description="Tools")
    def tool_names(self, plugin):
        return ", ".join(t["name"] for t in plugin.tools) or "—"

    @admin.display(description="sha256")
    def short_sha256(self, plugin):
        return plugin.sha256[:12]

    @admin.display(description="Discovered tools")
    def discovered_tools(self, plugin):
        if not plugin.tools:
            return "None yet: save the plugin to discover them."
        return format_html(
            "<table><thead><tr><th>Tool</th><th>Description</th><th>Arguments</th></tr></thead><tbody>{}</tbody></table>",
            format_html_join(
                "",
                "<tr><td><code>{}.{}</code></td><td>{}</td><td><code>{}</code></td></tr>",
                (
                    (
                        plugin.name,
                        t["name"],
                        t.get("description", ""),
                        ", ".join((t.get("input_schema") or {}).get("properties", {})) or "—",
                    )
                    for t in plugin.tools
                ),
            ),
        )

    @admin.action(description="Re-run tool discovery")
    def rediscover_tools(self, request, queryset):
        for plugin in queryset:
            try:
                plugin.full_clean()
            except ValidationError as exc:
                self.message_user(request, f"{plugin.name}: {'; '.join(exc.messages)}", messages.ERROR)
                continue
            plugin.save()
            self.message_user(request, f"{plugin.name}: {self.tool_names(plugin)}", messages.SUCCESS)
