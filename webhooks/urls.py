from django.urls import path

from .views import hook

urlpatterns = [path("<slug:channel>/", hook, name="webhook")]
