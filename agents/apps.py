from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from exoclaw.gateway.health import register_health_check

        from .lookup import invalidate
        from .models import Agent

        post_save.connect(invalidate, sender=Agent, dispatch_uid="agents-lookup-save")
        post_delete.connect(invalidate, sender=Agent, dispatch_uid="agents-lookup-delete")

        from .health import store_health

        register_health_check("store", store_health)
        # Fill the gateway's reserved chat.* and sessions.* methods.
        from . import session_rpc  # noqa: F401
        from .runtime import methods  # noqa: F401
