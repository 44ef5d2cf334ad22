"""Loopback HTTP and HTTPS servers that record every request they get, for the sandbox network tests.

The HTTPS servers' certificates come from a throwaway CA made for the test session (`tls_ca`), so
the tests can choose what the host trusts and which names a certificate covers."""

import datetime
import http.server
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass
class Seen:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes
    peer_port: int  # the client's port: two requests with the same one came over one connection
    sni: str | None = None  # the TLS server name the client sent (https only)
    local: str = ""  # the address the client connected to


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def _handle(self):
        server = self.server
        if getattr(self, "drop_next", False):
            # Closes the kept-alive connection as the next request arrives, unanswered: what a client
            # meets when the server closed an idle connection just as it sent a request over it.
            server.dropped.append(self.path)
            self.close_connection = True
            return
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        server.seen.append(Seen(self.command, parts.path, parse_qs(parts.query), dict(self.headers.items()), body,
                                self.client_address[1], getattr(self.connection, "sni", None),
                                self.connection.getsockname()[0]))
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
        elif parts.path == "/then-drop":
            self._reply(200, b"kept open")
            self.drop_next = True
        elif parts.path == "/drip":
            # A server that sends its answer a byte at a time: the body (part=body) or everything from
            # the status line on (part=head). Four seconds in all, far past the tests' call timeouts.
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 40\r\n\r\n" + b"x" * 40
            at_once = answer.index(b"x") if query.get("part") == ["body"] else 0
            self._raw(answer[:at_once], *(answer[i:i + 1] for i in range(at_once, len(answer))), pause=4 / len(answer))
        elif parts.path == "/early":
            # An interim 103 Early Hints before the answer; the client must wait for the 200.
            self._raw(b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
                      b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal")
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

    def _raw(self, *parts: bytes, pause: float = 0.0):
        """Writes the answer's bytes as given, each part on its own, `pause` seconds apart."""
        try:
            for i, part in enumerate(parts):
                if i and pause:
                    time.sleep(pause)
                self.wfile.write(part)
        except OSError:  # the client gave up
            self.close_connection = True

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
    dropped: list = field(default_factory=list)  # requests the server closed the connection on, unanswered
    scheme: str = "http"
    handshakes: list = field(default_factory=list)  # https: the SNI name of every handshake, finished or not

    def url(self, path="/", host="127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def shutdown_request(self, request):
        super().shutdown_request(request)
        self.closed.release()


class _TLSServer(_Server):
    """Takes the TLS handshake in the connection's own thread, so a client that refuses the
    certificate fails only its connection, not the accepting loop."""

    ssl_context: ssl.SSLContext

    def finish_request(self, request, client_address):
        try:
            request = self.ssl_context.wrap_socket(request, server_side=True)
        except OSError:  # ssl.SSLError too: the client refused the certificate, or spoke no TLS
            request.close()
            return
        super().finish_request(request, client_address)


def _serve(name: str, ssl_context: ssl.SSLContext | None = None):
    server = (_TLSServer if ssl_context else _Server)(("127.0.0.1", 0), _Handler)
    server.name, server.seen, server.release, server.closed = name, [], threading.Event(), threading.Semaphore(0)
    server.dropped = []
    handle = Server(name, server.server_address[1], server.seen, closed=server.closed, dropped=server.dropped,
                    scheme="https" if ssl_context else "http")
    if ssl_context:
        def record_sni(sock, server_name, context):
            # The server side of a TLS socket does not keep the name the client asked for; this does.
            sock.sni = server_name
            handle.handshakes.append(server_name)

        ssl_context.sni_callback = record_sni
        server.ssl_context = ssl_context
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
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


@dataclass
class CA:
    """A throwaway certificate authority: `path` is its certificate (PEM), for the host to trust."""

    path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    def server_context(self, names: list[str], directory: Path) -> ssl.SSLContext:
        """A server TLS context with a certificate, signed by this CA, for these DNS names only."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        chain = directory / f"{names[0]}.pem"
        chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(chain)
        return context


def make_ca(directory: Path) -> CA:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "exoclaw test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return CA(path, cert, key)


@pytest.fixture(scope="session")
def tls_ca(tmp_path_factory) -> CA:
    return make_ca(tmp_path_factory.mktemp("tls-ca"))


@pytest.fixture
def https_api(tls_ca, tmp_path):
    """An HTTPS API whose certificate, from `tls_ca`, is for localhost and api.example.test."""
    server, handle = _serve("https-api", tls_ca.server_context(["localhost", "api.example.test"], tmp_path))
    yield handle
    server.release.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def https_other(tls_ca, tmp_path):
    """An HTTPS server whose certificate, from `tls_ca`, is for other.test only."""
    server, handle = _serve("https-other", tls_ca.server_context(["other.test"], tmp_path))
    yield handle
    server.release.set()
    server.shutdown()
    server.server_close()
