from django.apps import AppConfig


class RoutingConfig(AppConfig):
    name = "routing"

    def ready(self):
        from . import signals  # noqa: F401  (connects the cache invalidation)
        from . import rpc  # noqa: F401  (registers routing.resolve in the gateway)
