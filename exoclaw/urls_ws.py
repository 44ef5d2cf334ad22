"""WebSocket URLs and channel-name routes (kept apart from `routing/`, which means binding resolution)."""

from agents.runtime.consumer import AgentRunConsumer
from agents.runtime.runs import RUNS_CHANNEL

websocket_urlpatterns = []
# Served by `manage.py runworker agent-runs` over Redis, or inside the gateway process (agents/runtime/runs.py).
channel_routes = {RUNS_CHANNEL: AgentRunConsumer.as_asgi()}
