"""Request bodies are bounded while they stream in, before routing or authentication.

Two layers, one limit (`limit_for`): `/hooks/` bodies may be at most `WEBHOOK_MAX_BODY_BYTES`, every
other path `HTTP_MAX_BODY_BYTES` (the admin uploads plugins). A larger body gets `413` and is never
held in memory:

- `BodyLimitMiddleware`, in `exoclaw/asgi.py`'s http path, counts the bytes as the ASGI server hands
  them over: a `Content-Length` over the limit is refused before any byte is read, a chunked body as
  soon as the count passes it. That is all an ASGI server that streams bodies (uvicorn, hypercorn)
  needs.
- daphne does not stream: Twisted receives the whole body first, and daphne then queues all of it
  for the application at once, so a middleware sees a 700 MiB upload only after the server holds it.
  `BodyLimitServer` (what `manage.py serve` runs) therefore counts the bytes while Twisted receives
  them and answers `413` and closes the connection as soon as the count passes the limit.

Imports nothing of the gateway or the apps.
"""

import json

from django.conf import settings

WEBHOOK_PREFIX = "/hooks/"


def limit_for(path: str) -> int:
    return settings.WEBHOOK_MAX_BODY_BYTES if path.startswith(WEBHOOK_PREFIX) else settings.HTTP_MAX_BODY_BYTES


def too_large_body(limit: int) -> bytes:
    return json.dumps(
        {"ok": False, "error": "payload_too_large", "message": f"The body is larger than {limit} bytes."}
    ).encode()


def _declared_length(headers) -> int | None:
    for name, value in headers:
        if name.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """ASGI middleware: 413 for an HTTP body over `limit_for(path)`, counted as it arrives."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = limit_for(scope["path"])
        declared = _declared_length(scope.get("headers", []))
        if declared is not None and declared > limit:
            return await self._refuse(send, limit)

        received = 0
        refused = False

        async def counted_receive():
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    await self._refuse(send, limit)
                    # The application stops reading and answers nothing: to it, the client went away.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message):
            if not refused:
                await send(message)

        await self.app(scope, counted_receive, guarded_send)

    @staticmethod
    async def _refuse(send, limit: int) -> None:
        body = too_large_body(limit)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


def daphne_server_class(base):
    """`base` (daphne's Server, or a subclass) serving through Twisted requests that count their
    body bytes as they arrive. Imported lazily: only `manage.py serve` needs daphne."""
    from daphne.http_protocol import HTTPFactory, WebRequest

    class LimitedRequest(WebRequest):
        _limit = 0
        _received = 0
        _refused = False

        def gotLength(self, length):
            path = getattr(self.channel, "_path", b"").split(b"?", 1)[0]
            self._limit = limit_for(path.decode("latin-1"))
            if length is not None and length > self._limit:
                self.requestHeaders.removeHeader(b"expect")  # no "100 Continue" for a body we refuse
                self._refuse()
                length = 0
            super().gotLength(length)

        def handleContentChunk(self, data):
            if self._refused:
                return
            self._received += len(data)
            if self._received > self._limit:
                self._refuse()
                return
            super().handleContentChunk(data)

        def requestReceived(self, command, path, version):
            if not self._refused:
                super().requestReceived(command, path, version)

        def _refuse(self):
            self._refused = True
            body = too_large_body(self._limit)
            head = (
                "HTTP/1.1 413 Content Too Large\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            self.channel.transport.write(head + body)
            self.channel.loseConnection()

    class LimitedHTTPFactory(HTTPFactory):
        def buildProtocol(self, addr):
            protocol = super().buildProtocol(addr)
            protocol.requestFactory = LimitedRequest
            return protocol

    class BodyLimitServer(base):
        # daphne.Server.run() makes its HTTP factory (`self.http_factory = HTTPFactory(self)`) and
        # listens with it at once; this property hands it ours instead.
        @property
        def http_factory(self):
            return self._limited_http_factory

        @http_factory.setter
        def http_factory(self, _factory):
            self._limited_http_factory = LimitedHTTPFactory(self)

    return BodyLimitServer
