import math
import secrets

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse

from common.forms import NameListField

from .gateway.limits import failed_logins
from .models import ApiToken
from .proxies import request_client_address


class ThrottledLoginForm(AdminAuthenticationForm):
    """The admin login behind the gateway's throttle of failed logins per client address (shared
    through Redis when configured): after GATEWAY_AUTH_FAILURES wrong passwords within
    GATEWAY_AUTH_WINDOW seconds, that address is refused until the oldest leaves the window."""

    def clean(self):
        address = request_client_address(self.request)
        throttle = failed_logins()
        wait = throttle.retry_after(address, max_failures=settings.GATEWAY_AUTH_FAILURES,
                                    window=settings.GATEWAY_AUTH_WINDOW)
        if wait:
            raise forms.ValidationError(
                f"Too many failed logins from your address. Try again in {math.ceil(wait)} seconds.",
                code="throttled",
            )
        try:
            return super().clean()
        except forms.ValidationError as e:
            if any(error.code == "invalid_login" for error in e.error_list):
                throttle.record_failure(address, window=settings.GATEWAY_AUTH_WINDOW)
            raise


admin.site.login_form = ThrottledLoginForm

# Session key: the add forms already used, each by its `once` value, with the pk of the token it made.
_CREATED_FORMS = "exoclaw_token_forms_used"
_CREATED_FORMS_KEPT = 20


class ApiTokenForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Pick at least one scope: a token without scopes can do nothing."},
        help_text="What the token may do over the gateway. Give each client the least it needs.",
    )

    channels = NameListField(
        required=False, label="Channels",
        help_text="Webhook channels it may post in as the platform, e.g. telegram (a bridge); * for every "
        "one. Empty: it talks only in its own conversations.",
    )
    agents = NameListField(
        required=False, label="Agents",
        help_text="Agents it may name directly instead of letting routing choose; * for every one.",
    )
    plugins = NameListField(
        required=False, label="Plugins",
        help_text="Plugins whose tools it sees over MCP at /mcp (needs the tools scope), e.g. calc; * for "
        "every one. Empty: none.",
    )

    # Identifies one filled-in add form, so that sending it again (a reload of the page that showed
    # the token) does not create a second token.
    once = forms.CharField(widget=forms.HiddenInput, required=False)

    class Meta:
        model = ApiToken
        fields = ["name", "scopes", "channels", "agents", "plugins", "expires_at", "enabled"]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    form = ApiTokenForm
    list_display = ["name", "prefix", "scope_list", "status", "expires_at", "last_used_at", "created"]
    list_filter = ["enabled", "expires_at", "last_used_at"]
    search_fields = ["name", "prefix"]
    readonly_fields = ["prefix", "last_used_at", "created"]
    actions = ["revoke"]

    def get_fieldsets(self, request, obj=None):
        fieldsets = [(None, {"fields": ["name", "scopes", "channels", "agents", "plugins", "expires_at", "enabled"]})]
        if obj is None:
            fieldsets[0][1]["fields"].append("once")
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

    def get_changeform_initial_data(self, request):
        return {**super().get_changeform_initial_data(request), "once": secrets.token_urlsafe(16)}

    def add_view(self, request, form_url="", extra_context=None):
        created = request.session.get(_CREATED_FORMS, {}).get(request.POST.get("once", "")) if request.method == "POST" else None
        if created is not None:
            self.message_user(
                request,
                "This form was sent again, so no second token was made. The token it created is below; "
                "its secret was shown once and cannot be shown again.",
                messages.WARNING,
            )
            return HttpResponseRedirect(reverse("admin:exoclaw_apitoken_change", args=[created]))
        return super().add_view(request, form_url, extra_context)

    def save_model(self, request, obj, form, change):
        if not change:
            # Kept on the request only: the raw token goes into this one response and nowhere else.
            request._new_api_token = obj.set_new_token()
        super().save_model(request, obj, form, change)

    def response_add(self, request, obj, post_url_continue=None):
        raw = getattr(request, "_new_api_token", None)
        if once := request.POST.get("once"):
            # The form's id and the token's pk only: nothing secret goes into the session.
            created = request.session.get(_CREATED_FORMS, {})
            created[once] = obj.pk
            request.session[_CREATED_FORMS] = dict(list(created.items())[-_CREATED_FORMS_KEPT:])
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
