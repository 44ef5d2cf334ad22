from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class WebhooksConfig(AppConfig):
    name = "webhooks"
    verbose_name = "Channels (webhooks)"

    def ready(self):
        from sandbox.models import CapabilityGrant, HttpSecret, Plugin

        from agents.runtime import service

        from .endpoints import invalidate, serves_channel
        from .models import ChannelEndpoint

        service.serve_platform_channels(serves_channel)

        for model in (ChannelEndpoint, Plugin, CapabilityGrant, HttpSecret):
            post_save.connect(invalidate, sender=model, dispatch_uid=f"webhooks-endpoints-save-{model.__name__}")
            post_delete.connect(invalidate, sender=model, dispatch_uid=f"webhooks-endpoints-delete-{model.__name__}")
