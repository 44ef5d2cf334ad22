"""The WebSocket end of the gateway: decides who may connect, then hands each frame to `frames.handle_frame`."""

import asyncio
import logging
import uuid

from channels.generic.websocket import AsyncWebsocketConsumer

from common import metrics
from exoclaw.proxies import scope_client_address

from . import methods  # noqa: F401  (registers ping, auth and status)
from .auth import authenticate_handshake, origin_allowed
from .context import Context
from .errors import RateLimited, RpcError, Unauthorized
from .frames import handle_frame
from .jsonrpc import encode, notification
from .limits import Limits, TokenBucket
from .notify import connection_group
from .revocation import forget, watch
from .stats import counters

logger = logging.getLogger(__name__)

# WebSocket close codes (4000-4999 are for applications): the HTTP status they correspond to, plus 4000.
CLOSE_UNAUTHORIZED = 4401
CLOSE_THROTTLED = 4429


class GatewayConsumer(AsyncWebsocketConsumer):
    ctx: Context | None = None

    async def dispatch(self, message):
        # Channels closes stale database connections before every message: a hop to the ORM's one
        # thread, queued behind every other ORM call of the process. Frames skip it: what a method
        # reads from the database goes through database_sync_to_async, which does it around each call.
        if message["type"] == "websocket.receive":
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def connect(self):
        if not origin_allowed(self.scope):
            await self.close()
            return
        self.limits = Limits.from_settings()
        self.bucket = TokenBucket(self.limits.rate, self.limits.burst)
        self.ctx = Context(
            connection_id=uuid.uuid4().hex,
            channel_name=self.channel_name,
            client=scope_client_address(self.scope),
            max_runs=self.limits.max_runs,
            send_text=self._send_text,
            group_add=self._group_add,
            group_discard=self._group_discard,
            end=self._end,
        )
        await self.accept()
        counters.connections += 1
        metrics.GATEWAY_CONNECTIONS.inc()
        await self.ctx.join(connection_group(self.ctx.connection_id))
        try:
            self.ctx.principal = await authenticate_handshake(self.scope, self.limits)
        except RpcError as e:
            await self.refuse(CLOSE_THROTTLED if isinstance(e, RateLimited) else CLOSE_UNAUTHORIZED, e)
            return
        logger.info(
            "gateway connection %s from %s as %s",
            self.ctx.connection_id,
            self.ctx.client,
            self.ctx.principal.name if self.ctx.principal else "(not yet authenticated)",
        )
        watch(self.ctx)
        if self.ctx.principal is None:
            self.grace = asyncio.get_running_loop().call_later(self.limits.auth_grace, self._grace_over)

    async def refuse(self, code: int, error: RpcError):
        """Say why in a `gateway.closing` notification (daphne drops close reasons), then close."""
        await self.send(text_data=encode(notification("gateway.closing", {"code": code, **error.to_error()["data"]})))
        await self.close(code=code, reason=error.reason)

    def _grace_over(self):
        if self.ctx.principal is None:
            timeout = Unauthorized(f"not authenticated within {self.limits.auth_grace:g} s", reason="auth_timeout")
            asyncio.ensure_future(self.refuse(CLOSE_UNAUTHORIZED, timeout))

    async def receive(self, text_data=None, bytes_data=None):
        frame = text_data if text_data is not None else bytes_data
        reply = await handle_frame(frame, self.ctx, self.limits, self.bucket)
        if reply is not None:
            await self.send(text_data=reply)

    async def gateway_notify(self, message):
        """A `gateway.notify` channel-layer message: forward it to the client as a notification."""
        method = message.get("method")
        if not isinstance(method, str):
            logger.warning("dropped a gateway.notify message without a method name")
            return
        await self.send(text_data=encode(notification(method, message.get("params"))))

    async def disconnect(self, code):
        if self.ctx is None:
            return
        counters.connections -= 1
        forget(self.ctx)
        metrics.GATEWAY_CONNECTIONS.dec()
        grace = getattr(self, "grace", None)
        if grace is not None:
            grace.cancel()
        await self.ctx.close()

    async def _end(self, error: RpcError) -> None:
        await self.refuse(CLOSE_UNAUTHORIZED, error)

    async def _send_text(self, text: str) -> None:
        await self.send(text_data=text)

    async def _group_add(self, group: str) -> None:
        await self.channel_layer.group_add(group, self.channel_name)

    async def _group_discard(self, group: str) -> None:
        await self.channel_layer.group_discard(group, self.channel_name)
