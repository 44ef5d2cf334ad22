"""Request bodies are bounded while they stream in, before routing or authentication: through the
ASGI middleware (exoclaw.asgi's http path), and against a live daphne (`manage.py serve`) whose
memory is measured while a 50 MiB chunked body is refused."""

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.clients_fixtures import ROOT, free_port, serving

MiB = 1024 * 1024


# --- The body limit in the ASGI path (any ASGI server) ----------------------------------------


def asgi_scope(path: str, headers=()) -> dict:
    return {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
            "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
            "headers": [(b"host", b"testserver"), (b"content-type", b"application/json"), *headers],
            "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}


async def call_app(scope, chunks):
    """Run exoclaw's ASGI application on a body streamed in `chunks`; return (status, body, chunks pulled)."""
    from exoclaw.asgi import application

    pulled, sent = 0, []
    source = iter(chunks)

    async def receive():
        nonlocal pulled
        chunk = next(source, None)
        if chunk is None:
            await asyncio.Event().wait()  # nothing more: like a client that keeps the connection open
        pulled += 1
        return {"type": "http.request", "body": chunk[0], "more_body": chunk[1]}

    async def send(message):
        sent.append(message)

    await asyncio.wait_for(application(scope, receive, send), timeout=30)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], body, pulled


def streamed(total: int, size: int = 64 * 1024):
    sent = 0
    while sent < total:
        n = min(size, total - sent)
        sent += n
        yield b"x" * n, sent < total


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_asgi_middleware_refuses_a_chunked_body_as_soon_as_it_passes_the_limit(settings):
    status, body, pulled = await call_app(asgi_scope("/hooks/x/"), streamed(50 * MiB))
    assert status == 413
    assert json.loads(body)["error"] == "payload_too_large"
    assert pulled <= settings.WEBHOOK_MAX_BODY_BYTES // (64 * 1024) + 1, f"read {pulled} chunks of 64 KiB"


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_asgi_middleware_refuses_a_declared_length_over_the_limit_before_reading(settings):
    scope = asgi_scope("/hooks/x/", [(b"content-length", str(50 * MiB).encode())])
    status, _, pulled = await call_app(scope, streamed(50 * MiB))
    assert (status, pulled) == (413, 0)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_a_body_under_the_limit_reaches_routing(settings):
    status, body, _ = await call_app(asgi_scope("/hooks/x/"), streamed(10 * 1024))
    assert status == 404 and json.loads(body)["error"] == "not_found"


# --- Against a live daphne (`manage.py serve`) -----------------------------------------------------


@pytest.fixture(scope="module")
def daphne(tmp_path_factory):
    var_dir = tmp_path_factory.mktemp("bodylimit")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXOCLAW_", "REDIS_", "SURREALDB_"))}
    env.update(DJANGO_SETTINGS_MODULE="exoclaw.settings", EXOCLAW_VAR_DIR=str(var_dir), PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    port = free_port()
    with serving([sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"], port, var_dir / "serve.log",
                 env=env) as proc:
        yield proc, port


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for process {pid}")


def reset_peak(pid: int) -> None:
    # Writing 5 to clear_refs resets the process's peak RSS (VmHWM) to its current RSS.
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def send_request(port: int, head: bytes, body_chunks) -> bytes:
    """Send `head` then each chunk, stopping if the server closes; return its response (head and body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
        s.sendall(head)
        try:
            for chunk in body_chunks:
                s.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the body ended: what we want
        answer = b""
        try:
            while b"\r\n\r\n" not in answer and (data := s.recv(65536)):
                answer += data
            response_head, _, body = answer.partition(b"\r\n\r\n")
            length = next((int(line.split(b":")[1]) for line in response_head.split(b"\r\n")
                           if line.lower().startswith(b"content-length:")), None)
            while (length is None or len(body) < length) and (data := s.recv(65536)):
                body += data
            return response_head + b"\r\n\r\n" + body
        except ConnectionResetError:
            return answer


def chunked(total: int, size: int = 64 * 1024):
    piece = b"a" * size
    for _ in range(total // size):
        yield b"%x\r\n%s\r\n" % (size, piece)
    yield b"0\r\n\r\n"


def test_a_50_mib_chunked_body_to_hooks_is_refused_while_the_server_grows_by_less_than_10_mib(daphne):
    proc, port = daphne
    before = memory_kib(proc.pid, "VmRSS")
    reset_peak(proc.pid)
    head = (f"POST /hooks/x/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n").encode()
    answer = send_request(port, head, chunked(50 * MiB))
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b'"error": "payload_too_large"' in answer
    grown = memory_kib(proc.pid, "VmHWM") - before
    assert grown < 10 * 1024, f"the server's peak RSS grew by {grown} KiB"


def test_a_declared_50_mib_body_is_refused_before_it_is_sent(daphne):
    proc, port = daphne
    head = (f"POST /hooks/x/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * MiB}\r\nExpect: 100-continue\r\n\r\n").encode()
    answer = send_request(port, head, [])
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"100 Continue" not in answer


def test_a_small_body_still_reaches_routing_on_daphne(daphne):
    _, port = daphne
    body = b'{"text": "hi"}'
    head = (f"POST /hooks/x/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    answer = send_request(port, head, [body])
    assert answer.startswith(b"HTTP/1.1 404 "), answer[:200]
