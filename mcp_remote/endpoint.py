"""What exoclaw needs to reach one remote MCP server, and how its failures are told; no SDK here, so
importing it costs nothing (the `mcp` SDK is imported by `client.py`, on first use)."""

from collections.abc import Mapping
from dataclasses import dataclass, field


KINDS = ("timeout", "host_denied", "not_found", "invalid_output", "remote_error")


class RemoteError(Exception):
    """A remote call that failed: `kind` (one of KINDS) and a message for the operator, which names
    the server, and never a header's value."""

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    headers_env: Mapping[str, str] = field(default_factory=dict)
    allow_private_hosts: tuple[str, ...] = ()
    timeout_ms: int = 30_000
    max_output_bytes: int = 1024 * 1024


def headers_from_env(headers_env: Mapping[str, str], environ: Mapping[str, str]) -> dict[str, str]:
    """The request headers, each read from the environment variable the server row names."""
    headers = {}
    for header, variable in headers_env.items():
        value = environ.get(variable)
        if not value:
            raise RemoteError("remote_error", f"the environment variable {variable} (for the {header} header) is not set")
        headers[header] = value
    return headers
