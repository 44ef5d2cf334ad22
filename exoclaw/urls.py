from django.contrib import admin
from django.urls import include, path

from exoclaw import probes, views

urlpatterns = [
    path("healthz", probes.healthz, name="healthz"),
    path("readyz", probes.readyz, name="readyz"),
    path("metrics", probes.metrics_view, name="metrics"),
    path("admin/sessions/", include("agents.admin_sessions")),
    path("admin/", admin.site.urls),
    path("hooks/", include("webhooks.urls")),
    path("", views.chat, name="chat"),
]
