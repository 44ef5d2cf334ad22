"""WebSocket URLs and channel-name routes (kept apart from `routing/`, which means binding resolution)."""

from django.urls import path

from agents.runtime.worker import RUNS_CHANNEL, AgentRunConsumer
from exoclaw.gateway.consumer import GatewayConsumer

websocket_urlpatterns = [
    path("ws", GatewayConsumer.as_asgi()),
]
# Served by `manage.py runworker agent-runs` over Redis, or inside the process that accepts the run
# (agents/runtime/worker.py).
channel_routes = {RUNS_CHANNEL: AgentRunConsumer.as_asgi()}
