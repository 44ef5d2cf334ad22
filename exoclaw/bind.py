"""Parsing and judging the gateway's bind address (EXOCLAW_BIND)."""

import ipaddress

# Where `serve` listens and `chat` connects when EXOCLAW_BIND is unset.
DEFAULT_BIND = "127.0.0.1:7200"


def parse_bind(value: str) -> tuple[str, int]:
    """'127.0.0.1:7200', '[::1]:7200', 'localhost:80' → (host, port). Raises ValueError."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"EXOCLAW_BIND must be HOST:PORT (e.g. 127.0.0.1:7200), not {value!r}")
    return host.strip("[]"), int(port)


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
