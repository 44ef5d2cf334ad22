"""Loopback HTTP servers that record every request they get, for the sandbox network tests."""

import http.server
import json
import threading
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import pytest


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    peer_port: int  # the client's port: two requests with the same one came over one connection


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _handle(self):
        server = self.server
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body,
                                self.client_address[1]))
        query = parse_qs(parts.query)
        if parts.path == "/redirect":
            self._reply(int(query.get("status", ["302"])[0]), b"", {"Location": query["to"][0]})
        elif parts.path == "/hang":
            server.release.wait(30)
            self._reply(200, b"too late")
        elif parts.path == "/drop":
            # Closes the connection after answering without saying so (no `Connection: close`), as a
            # server does with a kept-alive connection it has had enough of.
            self._reply(200, b"dropped")
            self.close_connection = True
        elif parts.path == "/big":
            self._reply(200, b"x" * int(query["n"][0]))
        else:
            # Echoes what it got, in its body and in headers: a secret sent here comes straight back.
            echo = {"server": server.name, "method": self.command, "path": parts.path, "query": parts.query,
                    "authorization": self.headers.get("Authorization"), "host": self.headers.get("Host"),
                    "body": body.decode(errors="replace")}
            self._reply(200, json.dumps(echo).encode(), {
                "Content-Type": "application/json",
                "X-Echo-Authorization": self.headers.get("Authorization") or "-",
                "X-Echo-Query": parts.query or "-",
            })

    do_GET = do_POST = do_PUT = do_DELETE = _handle

    def _reply(self, status, body: bytes, headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@dataclass
class Server:
    name: str
    port: int
    seen: list = field(default_factory=list)
    closed: threading.Semaphore | None = None  # released each time the server has closed a connection

    def url(self, path="/", host="127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.closed.release()


def _serve(name: str):
    server = _Server(("127.0.0.1", 0), _Handler)
    server.name, server.seen, server.release, server.closed = name, [], threading.Event(), threading.Semaphore(0)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    handle = Server(name, server.server_address[1], server.seen, server.closed)
    return server, handle


@pytest.fixture
def api():
    """The API a plug-in is granted: a recording loopback server."""
    server, handle = _serve("api")
    yield handle
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def target():
    """Another loopback server, on another port, that a plug-in is not granted (unless a test says so)."""
    server, handle = _serve("target")
    yield handle
    server.release.set()
    server.shutdown()
    server.server_close()
