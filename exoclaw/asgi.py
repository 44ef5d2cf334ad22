import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exoclaw.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402

from exoclaw.bodylimit import BodyLimitMiddleware  # noqa: E402
from exoclaw.urls_ws import channel_routes, websocket_urlpatterns  # noqa: E402
from mcp_api import asgi as mcp_asgi  # noqa: E402
from openai_api import asgi as openai_asgi  # noqa: E402

# Served ahead of Django: /mcp is the MCP server (mcp_api, the SDK's Streamable HTTP), /v1 the
# OpenAI-compatible API (openai_api, which Django's request path would slow down: see its asgi.py).
AHEAD_OF_DJANGO = (mcp_asgi, openai_asgi)


async def http_app(scope, receive, send):
    """/mcp and /v1 are apps of their own; everything else is Django."""
    path = scope["path"]
    app = next((way.application for way in AHEAD_OF_DJANGO if way.serves(path)), django_asgi_app)
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # Bodies are bounded as they stream in, before routing or authentication.
        "http": BodyLimitMiddleware(http_app),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        "channel": ChannelNameRouter(channel_routes),
    }
)
