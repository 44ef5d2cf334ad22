"""HTTP over ASGI, the few pieces the API needs: a request's head and body, the client going away,
and an answer written out (JSON, or Server-Sent Events)."""

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import aclosing
from dataclasses import dataclass, field

from exoclaw.proxies import scope_client_address

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


class Request:
    """One request: its method, path and headers (lower-case names; a repeated header's values joined
    with ",", as Django joins them), the host it asks for (Host, else the server's address, as in
    Django), the client's address behind TRUSTED_PROXIES, and its body.

    `listen()` is the only reader of the ASGI messages: it keeps the body, up to `max_body` bytes, and
    returns when the client goes away."""

    def __init__(self, scope: dict, receive, max_body: int):
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.headers: dict[str, str] = {}
        for name, value in scope.get("headers", ()):
            name, value = name.decode("latin-1").lower(), value.decode("latin-1")
            self.headers[name] = f"{self.headers[name]},{value}" if name in self.headers else value
        server = scope.get("server")
        self.host = self.headers.get("host") or (f"{server[0]}:{server[1]}" if server else "")
        self.client = scope_client_address(scope)
        self._receive = receive
        self._max_body = max_body
        self._body: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()

    async def body(self) -> bytes | None:
        """The whole body; None when it is larger than `max_body`."""
        return await self._body

    async def listen(self) -> None:
        """Read the body, then wait for the client to go away (the ASGI server says so however the
        answer is going: mid-stream, or while the client waits for a whole answer)."""
        parts, size = [], 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                return
            if self._body.done():
                continue
            size += len(message.get("body", b""))
            if size > self._max_body:
                self._body.set_result(None)  # the rest is read, never kept
                continue
            parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                self._body.set_result(b"".join(parts))


def _head(status: int, headers: dict[str, str], content_type: str) -> dict:
    # nosniff, as Django's SecurityMiddleware adds to every page: a client must take the body for what
    # Content-Type says, never sniff it into HTML.
    pairs = [(b"content-type", content_type.encode()), (b"x-content-type-options", b"nosniff")]
    pairs += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    return {"type": "http.response.start", "status": status, "headers": pairs}


@dataclass
class JsonAnswer:
    data: dict
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)

    async def write(self, send) -> None:
        body = json.dumps(self.data).encode()
        start = _head(self.status, self.headers, "application/json")
        start["headers"].append((b"content-length", str(len(body)).encode()))
        await send(start)
        await send({"type": "http.response.body", "body": body})


@dataclass
class EventStream:
    """Server-Sent Events from an async generator, which is closed as soon as the answer stops being
    written (its task is cancelled when the client goes away): at once, whatever it was waiting for,
    rather than whenever it is garbage-collected."""

    parts: AsyncIterator[bytes]
    headers: dict[str, str] = field(default_factory=dict)

    async def write(self, send) -> None:
        async with aclosing(self.parts) as parts:
            await send(_head(200, {**SSE_HEADERS, **self.headers}, "text/event-stream"))
            async for part in parts:
                await send({"type": "http.response.body", "body": part, "more_body": True})
        await send({"type": "http.response.body", "body": b""})
