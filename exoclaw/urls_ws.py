"""WebSocket URLs and channel-name routes (kept apart from `routing/`, which means binding resolution)."""

websocket_urlpatterns = []
channel_routes = {}
