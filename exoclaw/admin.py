from django import forms
from django.contrib import admin, messages
from django.template.response import TemplateResponse

from .models import ApiToken


class ApiTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one scope: a token without scopes can do nothing."},
        help_text="What the token may do over the gateway. Give each client the least it needs.",
    )

    class Meta:
        model = ApiToken
        fields = ["name", "scopes", "expires_at", "enabled"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "prefix", "scope_list", "status", "expires_at", "last_used_at", "created"]
    list_filter = ["enabled", "expires_at", "last_used_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "last_used_at", "created"]
    actions = ["revoke"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ["name", "scopes", "expires_at", "enabled"]})]
        if obj is None:
            fieldsets[0][1]["description"] = (
                "The token is generated when you save and shown once, on the next page. "
                "Only its hash is stored: copy it then, or create a new one."
            )
        else:
            fieldsets.append(("Usage", {"fields": ["prefix", "last_used_at", "created"]}))
        return fieldsets

    @admin.display(description="scopes")
    def scope_list(self, obj):
        return ", ".join(obj.scopes)

    @admin.display(description="status")
    def status(self, obj):
        if not obj.enabled:
            return "revoked"
        return "expired" if obj.is_expired() else "active"

    def save_model(self, request, obj, form, change):
        if not change:
            # Kept on the request only: the raw token goes into this one response and nowhere else.
            request._new_api_token = obj.set_new_token()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_new_api_token", None)
        if raw is None or "_popup" in request.POST:
            return super().response_add(request, obj, post_url_continue)
        # Rendered straight into the POST's response, not carried over a redirect in a message,
        # so the raw token is never written to a cookie or the session table.
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Copy your new API token",
            "token": obj,
            "raw_token": raw,
        }
        return TemplateResponse(request, "admin/exoclaw/apitoken/token_created.html", context)

    @admin.action(description="Revoke the selected tokens (they stop working at once)")
    def revoke(self, request, queryset):
        # Row by row, not queryset.update(), so anything listening for saves hears about each one.
        rows = list(queryset.filter(enabled=True))
        for token in rows:
            token.enabled = False
            token.save(update_fields=["enabled"])
        self.message_user(request, f"Revoked {len(rows)} token(s).", messages.SUCCESS)
