"""What a plug-in may reach over HTTP, as plain data: grant entries, the parsing of a request's URL,
the addresses that are refused, and the secrets injected per host.

Nothing here does I/O (sandbox/net.py sends the requests), so every rule is tested directly.

A grant entry names what may be reached:

    "api.example.com"               https and http on their default ports (443, 80)
    "api.example.com:8443"          https or http on port 8443
    "https://api.example.com"       https on 443 only
    "http://127.0.0.1:8080"         one scheme, one port
    "*.example.com"                 any subdomain (not example.com itself), default ports
    {"host": "https://api.example.com", "methods": ["GET"], "path_prefix": "/v2/"}

Loopback, private, link-local, CGNAT, multicast, metadata and other non-public addresses are
reached only through an entry that names the host or address itself (`localhost`,
`127.0.0.1:8080`): a wildcard never reaches them.
"""

import ipaddress
import re
from collections.abc import Mapping
from functools import lru_cache
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

from common.netcheck import address_kind, embedded_ipv4

DEFAULT_PORTS = {"http": 80, "https": 443}
# An HTTP secret's value as sent when no format is given: the secret alone.
SECRET_FORMAT = "{secret}"
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# The last label of a host that URL parsers read as an IPv4 number (decimal, octal or hex).
_NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class Refused(Exception):
    """A request the grant does not allow. `reason` is a short code (docs/plugins.md lists them)."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason
        self.message = message


@lru_cache(maxsize=1024)
def _host_of(text: str, *, wildcard: bool) -> str:
    """A grant's or a URL's host, normalised: lower case, no trailing dot, IP literals canonical.
    ValueError for anything ambiguous (numeric forms other than a dotted quad, say)."""
    host = text.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        address = ipaddress.IPv6Address(host[1:-1])
        return str(address)
    try:
        return str(ipaddress.IPv6Address(host))
    except ValueError:
        pass
    if wildcard and host.startswith("*."):
        return "*." + _host_of(host[2:], wildcard=False)
    if not host.isascii():
        host = host.encode("idna").decode("ascii")
    labels = host.split(".")
    if _NUMERIC_LABEL.match(labels[-1]):
        try:
            address = ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"{text!r} is a numeric host that is not a plain dotted IPv4 address") from None
        if str(address) != host:
            raise ValueError(f"{text!r} is not written as a plain dotted IPv4 address")
        return host
    if not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{text!r} is not a host name")
    return host


def _split_host_port(text: str) -> tuple[str, int | None]:
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise ValueError(f"{text!r}: unclosed [")
        host, rest = text[: end + 1], text[end + 1 :]
        if not rest:
            return host, None
        if not rest.startswith(":"):
            raise ValueError(f"{text!r}: expected :PORT after ]")
        return host, _port(rest[1:], text)
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, _port(port, text)
    return text, None


def _port(text: str, whole: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{whole!r}: the port must be a number from 1 to 65535")
    return int(text)


def is_special(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether an address is anything but a public unicast one: loopback, private, link-local, cloud
    metadata, CGNAT, multicast, reserved, unspecified, or IPv4 inside IPv6 (common.netcheck judges)."""
    return address_kind(address) is not None


@dataclass(frozen=True)
class HostRule:
    """One grant entry: `host` (a name, an IP address or `*.domain`), the schemes and the port it
    allows (None: each scheme's default port), and optionally the methods and a path prefix."""

    host: str
    schemes: tuple[str, ...] = ("https", "http")
    port: int | None = None
    methods: tuple[str, ...] = ()
    path_prefix: str = ""

    @classmethod
    def parse(cls, entry) -> "HostRule":
        """A grant entry: a string, or {"host": string, "methods": [...], "path_prefix": "/..."}.
        ValueError with a message for the operator."""
        methods, path_prefix = (), ""
        if isinstance(entry, Mapping):
            unknown = set(entry) - {"host", "methods", "path_prefix"}
            if unknown:
                raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; give host, methods, path_prefix")
            methods = entry.get("methods") or ()
            if not isinstance(methods, (list, tuple)) or not all(isinstance(m, str) and m.upper() in METHODS for m in methods):
                raise ValueError(f"methods must be a list of {', '.join(METHODS)}")
            methods = tuple(sorted({m.upper() for m in methods}))
            path_prefix = entry.get("path_prefix", "")
            if not isinstance(path_prefix, str) or (path_prefix and not path_prefix.startswith("/")):
                raise ValueError("path_prefix must start with /")
            if "%" in path_prefix or "/../" in path_prefix + "/" or "/./" in path_prefix + "/":
                raise ValueError("path_prefix must be a plain path, without %, . or .. segments")
            entry = entry.get("host")
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError("give a host, e.g. api.example.com, api.example.com:8443 or https://api.example.com")
        text = entry.strip()
        schemes = ("https", "http")
        if "://" in text:
            scheme, _, text = text.partition("://")
            if scheme.lower() not in DEFAULT_PORTS:
                raise ValueError(f"{entry!r}: only http:// and https:// can be granted")
            schemes = (scheme.lower(),)
        if "/" in text or "@" in text or "?" in text or "#" in text:
            raise ValueError(f"{entry!r}: give a host (with an optional scheme and port) without a path; "
                             'limit paths with {"host": ..., "path_prefix": "/v1/"}')
        host, port = _split_host_port(text)
        if host == "*" or ("*" in host and not host.startswith("*.")) or host.count("*") > 1:
            raise ValueError(f"{entry!r}: a wildcard is written *.example.com")
        try:
            host = _host_of(host, wildcard=True)
        except ValueError as exc:
            raise ValueError(str(exc)) from None
        if host.startswith("*.") and host.count(".") < 2:
            raise ValueError(f"{entry!r}: a wildcard needs a domain of at least two labels, e.g. *.example.com")
        return cls(host, schemes, port, methods, path_prefix)

    @property
    def wildcard(self) -> bool:
        return self.host.startswith("*.")

    def matches_host(self, host: str) -> bool:
        if self.wildcard:
            return host.endswith(self.host[1:]) and not _is_ip(host)
        return host == self.host

    def matches_origin(self, scheme: str, host: str, port: int) -> bool:
        if scheme not in self.schemes:
            return False
        if port != (self.port if self.port is not None else DEFAULT_PORTS[scheme]):
            return False
        return self.matches_host(host)

    def allows(self, method: str, path: str) -> bool:
        if self.methods and method not in self.methods:
            return False
        prefix = self.path_prefix
        if not prefix:
            return True
        if prefix.endswith("/"):
            return path.startswith(prefix) or path == prefix[:-1]
        return path == prefix or path.startswith(prefix + "/")

    def covers(self, other: "HostRule") -> bool:
        """Whether `other` allows nothing this rule does not (runplugin's narrowing check)."""
        if other.wildcard and not self.wildcard:
            return False
        same_host = other.host == self.host or (self.wildcard and other.host.endswith(self.host[1:]) and not _is_ip(other.host))
        ports = {s: (other.port or DEFAULT_PORTS[s]) for s in other.schemes}
        return (
            same_host
            and all(s in self.schemes and p == (self.port or DEFAULT_PORTS[s]) for s, p in ports.items())
            and (not self.methods or (other.methods and set(other.methods) <= set(self.methods)))
            and (not self.path_prefix or other.path_prefix.startswith(self.path_prefix))
        )

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        text = (f"{self.schemes[0]}://" if len(self.schemes) == 1 else "") + host + (f":{self.port}" if self.port else "")
        if self.methods:
            text += f" ({', '.join(self.methods)})"
        if self.path_prefix:
            text += f" {self.path_prefix}*"
        return text


@lru_cache(maxsize=1024)
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


@dataclass(frozen=True)
class Target:
    """A request's URL, checked and normalised: what is connected to, and what is shown."""

    scheme: str
    host: str  # normalised; an IP literal without brackets
    port: int
    path: str  # dot segments removed, never empty
    query: str

    @property
    def is_ip(self) -> bool:
        return _is_ip(self.host)

    @property
    def netloc(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == DEFAULT_PORTS[self.scheme] else f"{host}:{self.port}"

    @property
    def url(self) -> str:
        return urlunsplit((self.scheme, self.netloc, self.path, self.query, ""))

    @property
    def shown(self) -> str:
        """The URL without its query string: what errors, records and logs show."""
        return urlunsplit((self.scheme, self.netloc, self.path, "", ""))

    @property
    def origin(self) -> tuple[str, str, int]:
        return self.scheme, self.host, self.port


def shown_url(url: str) -> str:
    """A URL as errors may show it: no userinfo, no query string, no fragment."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))[:300]
    except ValueError:
        return "(an unparsable URL)"


def remove_dot_segments(path: str) -> str:
    out: list[str] = []
    for segment in path.split("/")[1:]:
        if segment == "..":
            if out:
                out.pop()
        elif segment != ".":
            out.append(segment)
    if path.endswith(("/.", "/..")):
        out.append("")
    return "/" + "/".join(out)


def parse_url(url: str) -> Target:
    """Parse a request's URL strictly; Refused for anything a grant could be fooled by."""
    if not isinstance(url, str) or not url:
        raise Refused("bad_request", "the request has no URL")
    if any(c in url for c in "\\\t\r\n ") or not url.isprintable():
        raise Refused("bad_request", f"the URL {shown_url(url)} contains spaces, backslashes or control characters")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        raise Refused("bad_request", f"the URL {shown_url(url)} cannot be parsed") from None
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise Refused("scheme_not_granted", f"only http and https URLs can be requested, not {shown_url(url)}")
    if "@" in parts.netloc:
        raise Refused("userinfo", f"URLs with a user name or password are refused: {shown_url(url)}")
    raw_host = parts.netloc.rpartition(":")[0] if port is not None or parts.netloc.endswith(":") else parts.netloc
    if not raw_host:
        raise Refused("bad_request", f"the URL {shown_url(url)} has no host")
    if "%" in raw_host:
        raise Refused("numeric_host", f"percent-encoded hosts are refused: {shown_url(url)}")
    try:
        host = _host_of(raw_host, wildcard=False)
    except ValueError as exc:
        raise Refused("numeric_host", f"{shown_url(url)}: {exc}") from None
    if _is_ip(host):
        address = ipaddress.ip_address(host)
        if embedded_ipv4(address) is not None:
            raise Refused("numeric_host", f"IPv4 addresses written as IPv6 are refused: {shown_url(url)}")
    path = parts.path or "/"
    if not path.startswith("/"):
        raise Refused("bad_request", f"the URL {shown_url(url)} has no absolute path")
    return Target(scheme, host, port if port is not None else DEFAULT_PORTS[scheme], remove_dot_segments(path), parts.query)


class Policy:
    """A grant's HTTP rules, parsed once."""

    def __init__(self, rules: tuple[HostRule, ...], secrets: tuple["SecretRule", ...] = ()):
        self.rules = rules
        self.secrets = secrets

    @classmethod
    def from_grant(cls, allowed_hosts, http_secrets=()) -> "Policy":
        rules, bad = [], []
        for entry in allowed_hosts:
            try:
                rules.append(HostRule.parse(entry))
            except ValueError as exc:
                bad.append(str(exc))
        if bad:
            raise ValueError("; ".join(bad))
        return cls(tuple(rules), tuple(SecretRule.parse(s) for s in http_secrets))

    def check(self, method: str, target: Target) -> HostRule:
        """The rule that allows this request; Refused (with the most telling reason) if none does."""
        same_host = [r for r in self.rules if r.matches_host(target.host)]
        if not same_host:
            raise Refused("not_granted", f"{target.shown}: the host {target.host} is not in the grant")
        origin = [r for r in same_host if r.matches_origin(target.scheme, target.host, target.port)]
        if not origin:
            allowed = ", ".join(sorted({str(r) for r in same_host}))
            raise Refused("port_not_granted", f"{target.shown}: {target.scheme} on port {target.port} is not granted "
                                              f"for {target.host} (granted: {allowed})")
        by_method = [r for r in origin if not r.methods or method in r.methods]
        if not by_method:
            raise Refused("method_not_granted", f"{method} {target.shown}: the method is not granted")
        if "%2e" in target.path.lower() or "%2f" in target.path.lower():
            if any(r.path_prefix for r in by_method):
                raise Refused("path_not_granted", f"{method} {target.shown}: encoded dots or slashes in a path are refused")
        for rule in by_method:
            if rule.allows(method, target.path):
                return rule
        raise Refused("path_not_granted", f"{method} {target.shown}: the path is outside the grant's path prefix")

    def check_addresses(self, rule: HostRule, target: Target, addresses: list) -> list:
        """The addresses that may be connected to; Refused if a special one is reached through a wildcard."""
        if not addresses:
            raise Refused("not_resolved", f"{target.shown}: the host {target.host} did not resolve")
        special = [a for a in addresses if is_special(a)]
        if special and rule.wildcard:
            raise Refused("private_address", f"{target.shown}: {target.host} resolves to {special[0]}, a loopback, "
                                             "private or otherwise non-public address, which a wildcard grant never reaches; "
                                             "grant the host by its name to allow it")
        return addresses


@dataclass(frozen=True)
class SecretRule:
    """A secret (an environment variable) injected into requests to one host, as a header
    (`Authorization: Bearer {secret}`) or a query parameter."""

    rule: HostRule
    secret_env: str
    header: str = ""
    query: str = ""
    format: str = SECRET_FORMAT

    FIELDS = ("host", "header", "query", "format", "secret_env")

    @classmethod
    def parse(cls, data) -> "SecretRule":
        if not isinstance(data, Mapping):
            raise ValueError("each HTTP secret is a table with host, header or query, format and secret_env")
        unknown = set(data) - set(cls.FIELDS)
        if unknown:
            raise ValueError(f"unknown key(s) {', '.join(sorted(unknown))}; give {', '.join(cls.FIELDS)}")
        host = data.get("host")
        rule = HostRule.parse(host) if isinstance(host, str) else None
        if rule is None or rule.wildcard:
            raise ValueError("host: give the one host the secret belongs to (no wildcard), e.g. https://api.example.com")
        header, query = data.get("header", "") or "", data.get("query", "") or ""
        if bool(header) == bool(query):
            raise ValueError("give either header (e.g. Authorization) or query (e.g. appid), not both and not neither")
        if header and not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", header):
            raise ValueError(f"header {header!r} is not a header name")
        if query and not re.fullmatch(r"[A-Za-z0-9._~-]+", query):
            raise ValueError(f"query {query!r} is not a plain parameter name")
        fmt = data.get("format", SECRET_FORMAT) or SECRET_FORMAT
        if not isinstance(fmt, str) or fmt.count("{secret}") != 1 or any(c in fmt for c in "\r\n"):
            raise ValueError("format must contain {secret} once, e.g. \"Bearer {secret}\"")
        env = data.get("secret_env")
        if not isinstance(env, str) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", env):
            raise ValueError("secret_env: give the name of an environment variable, not its value")
        return cls(rule, env, header, query, fmt)

    def applies_to(self, target: Target) -> bool:
        return self.rule.matches_origin(target.scheme, target.host, target.port)

    def value(self, secret: str) -> str:
        return self.format.replace("{secret}", secret)
