import os

from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.utils.html import format_html, format_html_join

from .models import McpServer


@admin.register(McpServer)
class McpServerAdmin(admin.ModelAdmin):
    list_display = ["name", "url", "offered", "timeout_ms", "enabled", "updated"]
    list_filter = ["enabled"]
    search_fields = ["name", "url"]
    readonly_fields = ["header_status", "tool_list", "created", "updated"]
    fieldsets = [
        (None, {"fields": ["name", "url", "enabled"]}),
        ("Authentication", {"fields": ["headers_env", "header_status"]}),
        ("What agents get", {"fields": ["allowed_tools", "tool_list"],
                             "description": "The tools are listed from the server each time this form is saved."}),
        ("Limits and reach", {"fields": [("timeout_ms", "max_output_bytes"), "allow_private_hosts"]}),
        ("History", {"fields": ["created", "updated"]}),
    ]
    actions = ["refresh_tools"]

    @admin.display(description="offered to agents")
    def offered(self, server):
        names = [t["name"] for t in server.tools if server.allows(t["name"])]
        return ", ".join(names) or "none"

    @admin.display(description="Headers")
    def header_status(self, server):
        # Only the variable names and whether they are set: a header's value is never shown.
        if not server.headers_env:
            return "—"
        return format_html_join(
            "", "<div><code>{}</code> ← <code>{}</code> ({})</div>",
            ((h, var, "set" if var in os.environ else "NOT SET in the server's environment")
             for h, var in sorted(server.headers_env.items())),
        )

    @admin.display(description="Tools the server lists")
    def tool_list(self, server):
        if not server.tools:
            return "none (the server is disabled, or listed none)"
        return format_html_join(
            "", "<div><code>{}</code> {} — {}</div>",
            ((t["name"], format_html("<strong>{}</strong>", "offered") if server.allows(t["name"]) else "not offered",
              t.get("description", "")) for t in server.tools),
        )

    @admin.action(description="List the selected servers' tools again")
    def refresh_tools(self, request, queryset):
        for server in queryset.filter(enabled=True):
            try:
                server.discover_tools()
            except ValidationError as e:
                self.message_user(request, f"{server.name}: {' '.join(e.messages)}", messages.ERROR)
                continue
            server.save(update_fields=["tools", "updated"])
            self.message_user(request, f"{server.name}: {len(server.tools)} tool(s) listed.", messages.SUCCESS)
