from django.contrib import admin
from django.urls import include, path

from exoclaw import views

urlpatterns = [
    path("admin/sessions/", include("agents.admin_sessions")),
    path("admin/", admin.site.urls),
    path("hooks/", include("webhooks.urls")),
    path("v1/", include("openai_api.urls")),
    path("", views.chat, name="chat"),
]
