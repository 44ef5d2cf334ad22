from django.apps import AppConfig


class SandboxConfig(AppConfig):
    name = "sandbox"

    def ready(self):
        from . import rpc  # noqa: F401  (registers plugin.list in the gateway)
