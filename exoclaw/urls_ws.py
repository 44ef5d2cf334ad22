"""WebSocket URLs and channel-name routes (kept apart from `routing/`, which means binding resolution)."""

from django.urls import path

from agents.runtime.consumer import AgentRunConsumer
from agents.runtime.runs import RUNS_CHANNEL
from exoclaw.gateway.consumer import GatewayConsumer

websocket_urlpatterns = [
    path("ws", GatewayConsumer.as_asgi()),
]
# Served by `manage.py runworker agent-runs` over Redis, or inside the gateway process (agents/runtime/runs.py).
channel_routes = {RUNS_CHANNEL: AgentRunConsumer.as_asgi()}
