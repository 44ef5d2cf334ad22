from django.urls import path

from .counting import counted
from .views import hook

urlpatterns = [path("<slug:channel>/", counted(hook), name="webhook")]
