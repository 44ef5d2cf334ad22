from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/sessions/", include("agents.admin_sessions")),
    path("admin/", admin.site.urls),
]
