from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        from exoclaw.gateway.health import register_health_check

        from .health import store_health

        register_health_check("store", store_health)
