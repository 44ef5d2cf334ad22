from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        from django.db.models.signals import post_delete, post_save

        from . import maintenance_rpc  # noqa: F401  (registers sessions.prune and store.migrate)
        from . import rpc  # noqa: F401  (registers chat.*, sessions.* and agents.list in the gateway)
        from .lookup import invalidate
        from .models import Agent

        post_save.connect(invalidate, sender=Agent, dispatch_uid="agents-lookup-save")
        post_delete.connect(invalidate, sender=Agent, dispatch_uid="agents-lookup-delete")
