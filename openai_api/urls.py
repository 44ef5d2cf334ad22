from django.urls import path, re_path

from . import views

urlpatterns = [
    path("models", views.models, name="openai-models"),
    path("models/<str:model>", views.model, name="openai-model"),
    path("chat/completions", views.chat_completions, name="openai-chat-completions"),
    # Anything else under /v1/ answers in OpenAI's shape too, not with an HTML page.
    re_path(r"^.*$", views.unknown_url),
]
