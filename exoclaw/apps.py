from django.apps import AppConfig


class ExoclawConfig(AppConfig):
    name = "exoclaw"
    verbose_name = "Gateway"
