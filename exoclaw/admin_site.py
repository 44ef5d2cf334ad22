"""The admin site: exoclaw's own header and titles, and the session browser (plain views under
/admin/sessions/, agents/admin_sessions.py) listed with the apps, in the index and the side navigation."""

from django.contrib import admin
from django.urls import reverse


class ExoclawAdminSite(admin.AdminSite):
    site_header = "exoclaw administration"
    site_title = "exoclaw admin"
    index_title = "Agents, routing, plugins, channels and sessions"

    def get_app_list(self, request, app_label=None):
        apps = super().get_app_list(request, app_label)
        if app_label is None and request.user.is_active and request.user.is_staff:
            url = reverse("admin_sessions:list")
            apps.append({
                "name": "Session history",
                "app_label": "session_history",
                "app_url": url,
                "has_module_perms": True,
                "models": [{
                    "name": "Sessions",
                    "object_name": "Session",
                    "admin_url": url,
                    "add_url": None,
                    "view_only": True,
                    "perms": {"add": False, "change": False, "delete": False, "view": True},
                }],
            })
        return apps
