from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self):
        from . import signals  # noqa: F401  (connects the cache invalidation)
