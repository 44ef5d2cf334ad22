"""exoclaw's own HTTP for plug-ins: every request a plug-in makes through `http_request` is sent here.

For each request, and again for each redirect hop: the URL is parsed strictly and checked against
the grant (host, scheme, port, method, path: sandbox/netrules.py); the host name is resolved here
and every address checked (no wildcard reaches a loopback, private or metadata address); the
connection goes to the checked address, with the name in the Host header and TLS SNI, so DNS cannot
change between check and connect; the grant's secrets are added for the hosts they belong to;
the request is held to the call's remaining time and the response to the grant's byte limit; and
the request, or why it was refused, is recorded on the call. The transport is the standard library's
http.client, with a small pool of kept-alive connections per host.
"""

import functools
import http.client
import io
import ipaddress
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, quote, urlencode, urljoin

import certifi

from common.redact import REDACTED, forms, redact_bytes

from .errors import SandboxError
from .netrules import Policy, Refused, SecretRule, Target, parse_url, shown_url

MAX_REDIRECTS = 5
_REDIRECTS = {301, 302, 303, 307, 308}
# An idle kept-alive connection is closed after this long (servers commonly close theirs after 5–75 s).
KEEPALIVE_SECONDS = 30
# Methods a request may be sent again with (RFC 9110 9.2.2), when a kept-alive connection fails under it.
_IDEMPOTENT = {"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"}
# Headers a plug-in may not set: the host sets them (or they describe the connection, not the request).
_HOP_HEADERS = {"host", "content-length", "transfer-encoding", "connection", "keep-alive", "upgrade", "te",
                "trailer", "proxy-authorization", "proxy-connection", "expect"}
# Dropped when a redirect leaves the origin the plug-in asked for, as browsers do.
_CREDENTIAL_HEADERS = {"authorization", "cookie"}

Resolver = Callable[[str, int], list]


def system_resolver(host: str, port: int) -> list:
    """The addresses of `host`, from the operating system's resolver."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return []
    return list(dict.fromkeys(ipaddress.ip_address(info[4][0]) for info in infos))


class RateLimiter:
    """Requests per minute per plug-in, over a sliding minute."""

    def __init__(self):
        self._lock = threading.Lock()
        self._sent: dict[str, deque] = {}

    def take(self, key: str, per_minute: int) -> bool:
        if per_minute <= 0:
            return True
        now = time.monotonic()
        with self._lock:
            sent = self._sent.setdefault(key, deque())
            while sent and now - sent[0] >= 60:
                sent.popleft()
            if len(sent) >= per_minute:
                return False
            sent.append(now)
            return True


class _UntilDeadline(io.RawIOBase):
    """A socket read against one deadline. http.client reads through a buffer that calls recv until
    it has what it asked for, so a socket timeout alone bounds each recv, not the response: a server
    that sends a byte at a time would hold the call for as long as it liked."""

    def __init__(self, sock, socket_file, deadline: float):
        self._sock = sock
        # The socket's own file, unread: held only so that the socket stays open while the response is
        # read (a socket closes for real when its last file does; http.client closes the connection's
        # socket as soon as it sees the response will close it).
        self._socket_file = socket_file
        self._deadline = deadline

    def close(self):
        super().close()
        self._socket_file.close()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's time ran out")
        self._sock.settimeout(left)
        return self._sock.recv_into(buffer)


class _Response(http.client.HTTPResponse):
    """A response read within the call's deadline, whose interim (1xx) answers are skipped."""

    def __init__(self, sock, *args, deadline: float, **kwargs):
        super().__init__(sock, *args, **kwargs)
        self.fp = io.BufferedReader(_UntilDeadline(sock, self.fp, deadline))

    def _read_status(self):
        # http.client skips `100 Continue` (in begin()) but would take any other 1xx (102, 103 Early
        # Hints) for the answer, and leave the real one on the connection for its next request.
        while True:
            version, status, reason = super()._read_status()
            if status == http.client.CONTINUE or not 100 <= status < 200:
                return version, status, reason
            http.client.parse_headers(self.fp)


class _Stale(Exception):
    """A kept-alive connection turned out closed by the server when it was used."""


class _Connection(http.client.HTTPConnection):
    """A connection to one checked address; over TLS, the certificate is verified for the URL's host
    name, which also goes out as SNI (the address is only where the bytes go)."""

    def __init__(self, address: str, port: int, *, timeout: float, tls: ssl.SSLContext | None, server_name: str):
        super().__init__(address, port, timeout=timeout)
        self.tls = tls
        self.server_name = server_name
        self.idle_since = 0.0

    def connect(self):
        super().connect()
        if self.tls is not None:
            self.sock = self.tls.wrap_socket(self.sock, server_hostname=self.server_name)

    def reusable(self) -> bool:
        """Still open and quiet: a server that closed an idle connection makes its socket readable."""
        if self.sock is None or time.monotonic() - self.idle_since > KEEPALIVE_SECONDS:
            return False
        poller = select.poll()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)


class HttpPools:
    """Idle keep-alive connections for one host's calls, by (plug-in, scheme, server name, address,
    port): a connection is only reused for the name its certificate was verified for, and only by the
    plug-in that opened it (whatever a server might leave on a connection reaches no other grant).

    The standard library's http.client, not httpx: a plug-in's request needs none of httpx's models
    or httpcore's machinery, and they cost more than the request itself on loopback (measured per GET
    on a kept-alive connection, outside a plug-in: httpx's client about 400 µs, httpcore 260 µs,
    http.client 175 µs).

    `ca_bundle`: a PEM file of the CA certificates https servers are verified against, instead of
    certifi's bundle (an operator's private CA)."""

    MAX_KEYS = 64
    MAX_IDLE_PER_KEY = 8

    def __init__(self, ca_bundle: str | None = None):
        self._ca_bundle = ca_bundle
        self._lock = threading.Lock()
        self._ssl: ssl.SSLContext | None = None
        self._idle: OrderedDict[tuple, list[_Connection]] = OrderedDict()

    def tls(self) -> ssl.SSLContext:
        with self._lock:
            if self._ssl is None:
                # Made at the first https request: loading the CA bundle costs every host that makes none.
                self._ssl = ssl.create_default_context(cafile=self._ca_bundle or certifi.where())
            return self._ssl

    def take(self, key: tuple) -> _Connection | None:
        while True:
            with self._lock:
                idle = self._idle.get(key)
                if not idle:
                    return None
                connection = idle.pop()
            if connection.reusable():
                return connection
            connection.close()

    def give(self, key: tuple, connection: _Connection) -> None:
        now = connection.idle_since = time.monotonic()
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            closing = [c for c in idle if now - c.idle_since > KEEPALIVE_SECONDS]
            idle[:] = [c for c in idle if c not in closing]
            if len(idle) < self.MAX_IDLE_PER_KEY:
                idle.append(connection)
            else:
                closing.append(connection)
            while len(self._idle) > self.MAX_KEYS:
                closing += self._idle.popitem(last=False)[1]
        for old in closing:
            old.close()

    def close(self) -> None:
        """Close every idle connection (the host is shutting down)."""
        with self._lock:
            closing = [c for idle in self._idle.values() for c in idle]
            self._idle.clear()
        for connection in closing:
            connection.close()


@dataclass
class NetLimits:
    max_response_bytes: int
    per_call: int
    per_minute: int


@dataclass
class CallNet:
    """One call's HTTP: its grant's policy, the values of its secrets, its limits and its record.
    Used on the thread running the call (host functions run there)."""

    plugin: str
    policy: Policy
    secrets: dict  # secret_env name -> value (None: not set)
    limits: NetLimits
    deadline: float  # time.monotonic()
    limiter: RateLimiter
    pools: HttpPools
    resolver: Resolver = system_resolver
    records: list[dict] = field(default_factory=list)
    failure: SandboxError | None = None
    status: int = 0
    headers: dict = field(default_factory=dict)
    sent: int = 0
    instance: object = None  # the running extism.Plugin, to stop it when a request fails

    def stop(self):
        """Stop the plug-in: its call has failed, whatever it does next."""
        if self.instance is not None:
            self.instance.cancel_handle().cancel()

    @property
    def secret_values(self) -> list[str]:
        return [v for v in self.secrets.values() if v]

    def request(self, method: str, url: str, headers: dict, body: bytes | None) -> bytes:
        """Send the request (following redirects that the grant allows); the response body.
        Raises SandboxError, which is also kept as the call's `failure`."""
        self.status, self.headers = 0, {}
        if self.failure is not None:
            raise self.failure
        try:
            return self._request(method, url, headers, body)
        except SandboxError as exc:
            self.failure = exc
            raise

    def _request(self, method, url, headers, body):
        method = method.upper() if isinstance(method, str) else ""
        if not method.isalpha():
            raise self._refused(Refused("bad_request", "the request has no valid method"), method, None)
        try:
            target = parse_url(url)
        except Refused as exc:
            raise self._refused(exc, method, None) from None
        first_origin = target.origin
        for hop in range(MAX_REDIRECTS + 1):
            response_status, location, data = self._send(method, target, headers, body, first_origin, hop)
            if location is None:
                return data
            try:
                next_target = parse_url(urljoin(target.url, location))
            except Refused as exc:
                raise self._refused(Refused(exc.reason, f"redirect from {target.shown} refused: {exc.message}"),
                                    method, None) from None
            if response_status == 303 or (response_status in (301, 302) and method == "POST"):
                method, body = "GET", None
            target = next_target
        raise self._refused(Refused("too_many_redirects", f"{target.shown}: more than {MAX_REDIRECTS} redirects"),
                            method, target)

    def _refused(self, refusal: Refused, method: str, target: Target | None, *, hop: int = 0) -> SandboxError:
        record = {"method": method, "host": target.netloc if target else "", "path": target.path if target else "",
                  "status": None, "bytes": 0, "duration_ms": 0.0, "refused": refusal.reason}
        if hop:
            record["redirect"] = True
        self.records.append(record)
        message = f"HTTP request refused ({refusal.reason}): {refusal.message}"
        if hop:
            message = f"HTTP redirect refused ({refusal.reason}): {refusal.message}; nothing was requested from it"
        return SandboxError("host_denied", message, reason=refusal.reason)

    def _send(self, method, target: Target, plugin_headers: dict, body, first_origin, hop: int):
        try:
            rule = self.policy.check(method, target)
            addresses = self.policy.check_addresses(rule, target, self._resolve(target))
        except Refused as exc:
            raise self._refused(exc, method, target, hop=hop) from None
        if self.limits.per_call and self.sent >= self.limits.per_call:
            raise self._refused(Refused("too_many_requests", f"{target.shown}: the grant allows "
                                        f"{self.limits.per_call} HTTP requests per call"), method, target, hop=hop)
        if not self.limiter.take(self.plugin, self.limits.per_minute):
            raise self._refused(Refused("rate_limited", f"{target.shown}: the grant allows "
                                        f"{self.limits.per_minute} HTTP requests per minute"), method, target, hop=hop)
        url, headers = self._with_secrets(method, target, plugin_headers, keep_credentials=target.origin == first_origin,
                                          hop=hop)
        self.sent += 1
        if self.deadline <= time.monotonic():
            raise SandboxError("timeout", f"{method} {target.shown}: the call's time ran out before the request")
        start = time.perf_counter()
        record = {"method": method, "host": target.netloc, "path": target.path, "status": None, "bytes": 0,
                  "duration_ms": 0.0, "refused": None}
        if hop:
            record["redirect"] = True
        self.records.append(record)
        try:
            status, response_headers, data = self._exchange(method, target, url, headers, body, addresses)
        except SandboxError as exc:
            record["duration_ms"] = round((time.perf_counter() - start) * 1000, 3)
            record["refused" if exc.kind == "host_denied" else "error"] = exc.reason or exc.kind
            raise
        record.update(status=status, bytes=len(data), duration_ms=round((time.perf_counter() - start) * 1000, 3))
        location = response_headers.get("location") if status in _REDIRECTS else None
        if location is None:
            secrets = self.secret_values
            self.status = status
            self.headers = {k: _redact_text(v, secrets) for k, v in response_headers.items()}
            data = redact_bytes(data, secrets) if secrets else data
        return status, location, data

    def _resolve(self, target: Target) -> list:
        if target.is_ip:
            return [ipaddress.ip_address(target.host)]
        return self.resolver(target.host, target.port)

    def _with_secrets(self, method, target: Target, plugin_headers: dict, *, keep_credentials: bool, hop: int):
        """The URL and headers to send: the plug-in's headers (credentials kept only on the origin it
        asked for) plus the secrets of this host; Refused if a secret would go anywhere else."""
        headers = {}
        for name, value in plugin_headers.items():
            lower = name.lower()
            if lower in _HOP_HEADERS or (lower in _CREDENTIAL_HEADERS and not keep_credentials):
                continue
            headers[name] = value
        query = target.query
        mine = [s for s in self.policy.secrets if s.applies_to(target)]
        others = [v for s in self.policy.secrets if s not in mine and (v := self.secrets.get(s.secret_env))]
        leaked = [f for v in others for f in forms(v) if f in query or f in target.path
                  or any(f in str(h) for h in headers.values())]
        if leaked:
            raise self._refused(Refused("secret_leak", f"{target.shown}: the request would carry a secret that belongs "
                                        "to another host"), method, target, hop=hop)
        for secret in mine:
            value = self.secrets.get(secret.secret_env)
            if not value:
                raise SandboxError("not_found", f"the HTTP secret for {secret.rule} needs the environment variable "
                                   f"{secret.secret_env}, which is not set")
            if secret.header:
                sent = secret.value(value)
                if not header_value_ok(sent):
                    raise SandboxError("network_error", f"the HTTP secret for {secret.rule} (from {secret.secret_env}) "
                                       "cannot go in a header: it holds a line break, a control character or a "
                                       "character outside Latin-1", reason="bad_secret")
                headers = {k: v for k, v in headers.items() if k.lower() != secret.header.lower()}
                headers[secret.header] = sent
            else:
                pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != secret.query]
                query = urlencode([*pairs, (secret.query, secret.value(value))], quote_via=quote)
        return Target(target.scheme, target.host, target.port, target.path, query), headers

    def _exchange(self, method, name_target: Target, target: Target, headers, body, addresses):
        """Send to the first checked address that accepts a connection; status, headers, body."""
        path = target.path + (f"?{target.query}" if target.query else "")
        headers = {**headers, "Host": target.netloc}
        last_error = None
        for address in addresses:
            key = (self.plugin, target.scheme, target.host, str(address), target.port)
            kept = self.pools.take(key)
            if kept is not None:
                try:
                    return self._on(kept, key, method, name_target, path, headers, body, kept=True)
                except _Stale:
                    pass  # the server closed the kept-alive connection as the request went out: a new one
            try:
                connection = self._open(method, name_target, target, str(address))
            except OSError as exc:  # refused, unreachable: try the name's next address
                last_error = exc
                continue
            return self._on(connection, key, method, name_target, path, headers, body, kept=False)
        raise SandboxError("network_error", f"{method} {name_target.shown}: cannot connect "
                           f"({_redact_text(str(last_error), self.secret_values)})", reason="connect_failed")

    def _open(self, method, name_target: Target, target: Target, address: str) -> _Connection:
        tls = self.pools.tls() if target.scheme == "https" else None
        connection = _Connection(address, target.port, timeout=max(self.deadline - time.monotonic(), 0.001), tls=tls,
                                 server_name=target.host)
        try:
            connection.connect()
        except TimeoutError:
            connection.close()
            raise self._timed_out(method, name_target) from None
        except ssl.SSLError as exc:
            # The address answered but its TLS failed: that is no reason to try another address of
            # the name, and "cannot connect" would hide a certificate problem.
            connection.close()
            raise self._tls_failed(method, name_target, exc) from None
        except OSError:
            connection.close()
            raise
        return connection

    def _on(self, connection: _Connection, key, method, name_target: Target, path, headers, body, *, kept: bool):
        """The request on `connection`, which then goes back to the pool or is closed. A kept-alive
        connection the server had closed raises _Stale where sending the request again is safe."""
        try:
            status, response_headers, data, done = self._over(connection, method, name_target, path, headers, body)
        except TimeoutError:
            connection.close()
            raise self._timed_out(method, name_target) from None
        except ValueError:
            # A header http.client will not send. Its message quotes the header as Python bytes,
            # which no redaction of the raw secret would match: it is not passed on.
            connection.close()
            raise SandboxError("host_denied", f"HTTP request refused (bad_request): {method} {name_target.shown}: "
                               "a header HTTP cannot carry", reason="bad_request") from None
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            # Closed before any answer (RemoteDisconnected is a ConnectionError too): the request was
            # not processed, or it is one that may be repeated (RFC 9110 9.2.2).
            if kept and isinstance(exc, ConnectionError) and method in _IDEMPOTENT:
                raise _Stale from None
            raise SandboxError("network_error", f"{method} {name_target.shown}: {type(exc).__name__}: "
                               f"{_redact_text(str(exc), self.secret_values)}", reason="failed") from None
        except SandboxError:
            connection.close()
            raise
        if done:
            self.pools.give(key, connection)
        else:
            connection.close()
        return status, response_headers, data

    def _over(self, connection: _Connection, method, name_target: Target, path, headers, body):
        """One request and its whole response on `connection`: status, headers (lower-cased names, repeats
        joined), body, and whether the connection may be used again."""
        # Sending is held to the time left as a whole (a socket timeout bounds all of sendall); reading,
        # to the deadline by the response class.
        connection.sock.settimeout(max(self.deadline - time.monotonic(), 0.001))
        connection.response_class = functools.partial(_Response, deadline=self.deadline)
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        data = bytearray()
        while chunk := response.read(65536):
            data += chunk
            if len(data) > self.limits.max_response_bytes:
                raise self._too_large(method, name_target)
        joined = {}
        for key, value in response.getheaders():
            key = key.lower()
            joined[key] = f"{joined[key]}, {value}" if key in joined else value
        return response.status, joined, bytes(data), not response.will_close

    def _tls_failed(self, method, target: Target, exc: ssl.SSLError) -> SandboxError:
        if isinstance(exc, ssl.SSLCertVerificationError):
            why = f"the server's certificate was refused: {exc.verify_message}"
        else:
            why = f"TLS handshake failed ({exc.reason or exc})"
        return SandboxError("network_error", f"{method} {target.shown}: {why}", reason="tls_failed")

    def _timed_out(self, method, target: Target) -> SandboxError:
        return SandboxError("timeout", f"{method} {target.shown}: no response within the call's remaining time")

    def _too_large(self, method, target: Target) -> SandboxError:
        return SandboxError("host_denied", f"HTTP response refused (response_too_large): {method} {target.shown} sent more "
                            f"than the grant's {self.limits.max_response_bytes} bytes", reason="response_too_large")


def header_value_ok(value: str) -> bool:
    """A header value HTTP/1.1 can carry: Latin-1, without a line break or NUL."""
    return not any(c in value for c in "\r\n\0") and all(ord(c) < 256 for c in value)


def _redact_text(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        for form in forms(secret):
            text = text.replace(form, REDACTED)
    return text


__all__ = ["CallNet", "HttpPools", "header_value_ok", "NetLimits", "RateLimiter", "SecretRule", "system_resolver", "shown_url"]
