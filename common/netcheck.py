"""Whether exoclaw may connect to a URL's host: the one classification of addresses that outbound
HTTP shares (remote MCP servers here; the sandbox's checked HTTP through `address_kind`).

A host is refused when its name or any address it resolves to is loopback, private (RFC 1918, ULA),
link-local, carrier-grade NAT (100.64.0.0/10), multicast, reserved or unspecified, or a cloud
metadata address, unless it is named in `allow`: the host name itself, or an address or network
(`127.0.0.1`, `10.0.0.0/8`, `::1`) that holds the address. Every resolved address is checked, so a
public name that points inside is refused too.

    problem = host_problem("127.0.0.1", ["127.0.0.1"], allow=[])   # "127.0.0.1 is a loopback address"
    await check_url("https://mcp.example.com/mcp", allow=[])       # raises HostRefused, or returns

`host_problem` is pure (it takes the resolved addresses); `check_url` resolves without blocking the
event loop. A name resolved here may resolve differently when the HTTP client connects (DNS
rebinding): this check narrows what a URL can reach, it does not pin the connection.
"""

import asyncio
import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Addresses that answer instance credentials on cloud hosts, refused even where the network they sit
# in would be allowed (`10.0.0.0/8` does not allow Alibaba's 100.100.100.200; only naming it does).
METADATA = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean
    "169.254.170.2",    # AWS ECS task metadata
    "fd00:ec2::254",    # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
))
CGNAT = ipaddress.ip_network("100.64.0.0/10")
# NAT64 (RFC 6052) embeds an IPv4 address in an IPv6 one.
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class HostRefused(ValueError):
    """The URL may not be reached; the message names the host and why, never a secret."""


def embedded_ipv4(ip: Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, NAT64, Teredo), if any."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.teredo:
        return ip.teredo[1]
    return ip.ipv4_mapped or ip.sixtofour or (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in NAT64 else None)


def address_kind(ip: Address) -> str | None:
    """Why an address is off limits ("loopback", "private", …), or None for a public address. An IPv4
    address carried inside an IPv6 one is judged as that IPv4 address, and never counts as public:
    such a disguise is only reached by naming it."""
    embedded = embedded_ipv4(ip)
    if embedded is not None:
        return address_kind(embedded) or "IPv4-in-IPv6"
    if ip in METADATA:
        return "cloud metadata"
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_multicast:
        return "multicast"
    if ip.is_unspecified:
        return "unspecified"
    if isinstance(ip, ipaddress.IPv4Address) and ip in CGNAT:
        return "carrier-grade NAT"
    if ip.is_private:
        return "private"
    if ip.is_reserved or not ip.is_global:
        return "reserved"
    return None


def _allows(allow: Iterable[str], host: str, ip: Address) -> bool:
    for entry in allow:
        entry = entry.strip().lower()
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry.strip("[]"), strict=False)
        except ValueError:
            continue
        if ip in network and (ip not in METADATA or network.num_addresses == 1):
            return True
    return False


def host_problem(host: str, addresses: Iterable[str], allow: Iterable[str] = ()) -> str | None:
    """Why `host` (resolved to `addresses`) may not be reached, or None when it may."""
    host = host.strip("[]").lower().rstrip(".")
    allow = list(allow)
    addresses = list(addresses)
    if not addresses:
        return f"{host} does not resolve to any address"
    if host == "localhost" or host.endswith(".localhost"):
        addresses = list(addresses) + ["127.0.0.1"]
    for raw in addresses:
        ip = ipaddress.ip_address(raw.split("%", 1)[0])
        kind = address_kind(ip)
        if kind and not _allows(allow, host, ip):
            where = host if host == str(ip) else f"{host} ({ip})"
            return (f"{where} is a {kind} address; name it in the allowed private hosts to reach it")
    return None


def split_url(url: str) -> tuple[str, int]:
    """(host, port) of an http(s) URL; HostRefused for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise HostRefused(f"not a usable URL: {e}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HostRefused("the URL must start with http:// or https:// and name a host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


async def resolve(host: str, port: int) -> list[str]:
    try:
        ipaddress.ip_address(host)
        return [host]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        raise HostRefused(f"{host} does not resolve: {e}") from None
    return sorted({info[4][0] for info in infos})


async def check_url(url: str, allow: Iterable[str] = ()) -> None:
    """Raise HostRefused unless every address `url`'s host resolves to may be reached."""
    host, port = split_url(url)
    problem = host_problem(host, await resolve(host, port), allow)
    if problem:
        raise HostRefused(problem)
