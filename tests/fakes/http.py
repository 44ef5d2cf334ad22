"""A tiny scripted HTTP/1.1 server on loopback, the base of the fake LLM providers.

It runs its own asyncio loop in a background thread, so it serves async tests, sync tests and
other processes (daphne, runworker) alike. Each request takes the next scripted answer from a
queue (`enqueue`), else asks `responder(request)`, else gets a 500 that says nothing was scripted.
Every request is recorded, with its headers and JSON body, before it is answered.

Answers:
- `Reply(status, body, headers)`: a complete response (JSON when `body` is a dict).
- `Stream(chunks)`: a 200 `text/event-stream` sent chunk by chunk (chunked encoding, each chunk
  flushed on its own). `drop=True` cuts the connection after the chunks, mid-body.
  `pause_after=n` stops after n chunks until `gate` is set (forever when no gate) or the client
  goes away; `Recorded.disconnected` tells a test the client closed while the server still streamed.
- `Drop()`: close the connection without answering.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Union


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    disconnected: threading.Event = field(default_factory=threading.Event, repr=False)

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | list = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Stream:
    chunks: list[bytes]
    status: int = 200
    headers: dict[str, str] = field(default_factory=lambda: {"content-type": "text/event-stream"})
    drop: bool = False
    pause_after: int | None = None
    gate: threading.Event | None = None


@dataclass
class Drop:
    pass


Answer = Union[Reply, Stream, Drop]


class FakeServer:
    def __init__(self, responder: Callable[[Recorded], Answer] | None = None):
        self.responder = responder
        self.requests: list[Recorded] = []
        self._queue: deque[Answer] = deque()
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[asyncio.Task] = set()
        self.port = 0

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def enqueue(self, *answers: Answer) -> None:
        with self._lock:
            self._queue.extend(answers)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[Recorded]:
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"fake server got {len(self.requests)} requests, expected {count}")
            return list(self.requests)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeServer:
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", 0)
            )
            self.port = self._server.sockets[0].getsockname()[1]
            ready.set()
            self._loop.run_forever()
            self._loop.close()

        self._thread = threading.Thread(target=run, name="fake-llm-server", daemon=True)
        self._thread.start()
        if not ready.wait(5):
            raise RuntimeError("fake server did not start")
        return self

    def stop(self) -> None:
        async def shutdown():
            self._server.close()
            for task in list(self._conns):
                task.cancel()
            await asyncio.gather(*self._conns, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    # --- serving ---------------------------------------------------------------------------

    def _next_answer(self, request: Recorded) -> Answer:
        with self._lock:
            self.requests.append(request)
            self._lock.notify_all()
            number = len(self.requests)
            if self._queue:
                return self._queue.popleft()
        if self.responder is not None:
            return self.responder(request)
        return Reply(
            500,
            {"error": {"type": "fake_server", "message": f"fake server: nothing scripted for request #{number}"}},
            {"x-should-retry": "false"},
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._conns.add(task)
        try:
            while await self._serve_one(reader, writer):
                pass
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._conns.discard(task)
            writer.transport.abort()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return False
        request_line, *header_lines = head.decode("latin-1").split("\r\n")
        method, path, _ = request_line.split(" ", 2)
        headers = {}
        for line in header_lines:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        body = await reader.readexactly(int(headers.get("content-length", 0)))
        request = Recorded(method, path, headers, body)
        answer = self._next_answer(request)
        if isinstance(answer, Drop):
            return False
        if isinstance(answer, Reply):
            await self._reply(writer, answer)
            return True
        return await self._stream(reader, writer, answer, request)

    async def _reply(self, writer: asyncio.StreamWriter, reply: Reply) -> None:
        body, headers = reply.body, dict(reply.headers)
        if isinstance(body, dict | list):
            body = json.dumps(body)
            headers.setdefault("content-type", "application/json")
        if isinstance(body, str):
            body = body.encode()
        headers["content-length"] = str(len(body))
        writer.write(_head(reply.status, headers) + body)
        await writer.drain()

    async def _stream(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stream: Stream, request: Recorded
    ) -> bool:
        writer.write(_head(stream.status, {**stream.headers, "transfer-encoding": "chunked"}))
        await writer.drain()
        for number, chunk in enumerate(stream.chunks):
            if number == stream.pause_after and not await self._wait_gate(stream.gate, reader):
                request.disconnected.set()
                return False
            if chunk:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                try:
                    await writer.drain()
                except ConnectionError:
                    request.disconnected.set()
                    return False
        if stream.pause_after is not None and stream.pause_after >= len(stream.chunks):
            if not await self._wait_gate(stream.gate, reader):
                request.disconnected.set()
                return False
        if stream.drop:
            return False
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    @staticmethod
    async def _wait_gate(gate: threading.Event | None, reader: asyncio.StreamReader) -> bool:
        """Wait for the gate; False when the client went away first."""
        gone = asyncio.ensure_future(reader.read(1))
        try:
            while not gone.done() and not (gate is not None and gate.is_set()):
                await asyncio.wait({gone}, timeout=0.005)
            return not gone.done()
        finally:
            gone.cancel()


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = "Site Overloaded" if status == 529 else "Unknown"
    lines = [f"HTTP/1.1 {status} {phrase}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --- Script pieces shared by both fakes ---------------------------------------------------


@dataclass(frozen=True)
class Text:
    """Assistant text, streamed one word (with its trailing space) per delta."""

    text: str

    def pieces(self) -> list[str]:
        words = self.text.split(" ")
        return [w + " " for w in words[:-1]] + [words[-1]] if self.text else []


@dataclass(frozen=True)
class ToolUse:
    """A tool call whose JSON arguments arrive in the given fragments, one delta each."""

    id: str
    name: str  # the name on the wire, e.g. "calc__add"
    fragments: tuple[str, ...] = ()

    @classmethod
    def split(cls, id: str, name: str, arguments: dict, parts: int = 3) -> ToolUse:
        raw = json.dumps(arguments)
        size = max(1, -(-len(raw) // parts))
        return cls(id, name, tuple(raw[i : i + size] for i in range(0, len(raw), size)))


def last_tool_result(body: dict) -> dict | None:
    """The last tool result a request carries, in either provider's shape, as {"content", "id"}."""
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "tool":
            return {"id": message["tool_call_id"], "content": message["content"]}
        if message.get("role") == "user" and isinstance(message.get("content"), list):
            for block in reversed(message["content"]):
                if block.get("type") == "tool_result":
                    return {"id": block["tool_use_id"], "content": block["content"]}
        if message.get("role") in ("user", "assistant"):
            return None
    return None
