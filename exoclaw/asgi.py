import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exoclaw.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402  (needs Django set up first)
from channels.routing import ChannelNameRouter, ProtocolTypeRouter, URLRouter  # noqa: E402

from exoclaw.bodylimit import BodyLimitMiddleware  # noqa: E402
from exoclaw.urls_ws import channel_routes, websocket_urlpatterns  # noqa: E402
from mcp_api import asgi as mcp_asgi  # noqa: E402


async def http_app(scope, receive, send):
    """/mcp is the MCP server (mcp_api, the SDK's Streamable HTTP); everything else is Django."""
    app = mcp_asgi.application if mcp_asgi.serves(scope["path"]) else django_asgi_app
    return await app(scope, receive, send)


application = ProtocolTypeRouter(
    {
        # Bodies are bounded as they stream in, before routing or authentication.
        "http": BodyLimitMiddleware(http_app),
        "websocket": AuthMiddlewareStack(URLRouter(websocket_urlpatterns)),
        "channel": ChannelNameRouter(channel_routes),
    }
)
