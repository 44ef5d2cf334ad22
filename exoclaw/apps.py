from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ExoclawConfig(AppConfig):
    name = "exoclaw"
    verbose_name = "Gateway"


class ExoclawAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with exoclaw's admin site (exoclaw/admin_site.py) as `admin.site`;
    named in INSTALLED_APPS instead of "django.contrib.admin"."""

    default = False
    default_site = "exoclaw.admin_site.ExoclawAdminSite"
