"""WebSocket URLs and channel-name routes (kept apart from `routing/`, which means binding resolution)."""

from django.urls import path

from exoclaw.gateway.consumer import GatewayConsumer

websocket_urlpatterns = [
    path("ws", GatewayConsumer.as_asgi()),
]
channel_routes = {}
