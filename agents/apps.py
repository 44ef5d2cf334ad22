from django.apps import AppConfig


class AgentsConfig(AppConfig):
    name = "agents"

    def ready(self):
        # Fill the gateway's reserved chat.* and sessions.* methods.
        from . import session_rpc  # noqa: F401
        from .runtime import methods  # noqa: F401
