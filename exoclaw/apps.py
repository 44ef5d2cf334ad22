import os

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps
from django.db.backends.signals import connection_created


def _private_sqlite(sender, connection, **kwargs):
    # The database holds token hashes and the admin's password hashes: readable by its user only.
    name = str(connection.settings_dict.get("NAME") or "")
    if connection.vendor == "sqlite" and name and not name.startswith((":memory:", "file:")) and os.path.exists(name):
        os.chmod(name, 0o600)


class ExoclawConfig(AppConfig):
    name = "exoclaw"
    verbose_name = "Gateway"

    def ready(self):
        connection_created.connect(_private_sqlite, dispatch_uid="exoclaw-private-sqlite")


class ExoclawAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with exoclaw's admin site (exoclaw/admin_site.py) as `admin.site`;
    named in INSTALLED_APPS instead of "django.contrib.admin"."""

    default = False
    default_site = "exoclaw.admin_site.ExoclawAdminSite"
