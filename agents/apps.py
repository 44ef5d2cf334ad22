from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        from exoclaw.gateway.health import register_health_check

        from .health import store_health

        register_health_check("store", store_health)
        # Fill the gateway's reserved chat.* and sessions.* methods.
        from . import session_rpc  # noqa: F401
        from .runtime import methods  # noqa: F401
