"""Grants and Extism manifests as plain data: what a plug-in may touch, and how that becomes a manifest.

Nothing here imports Django or Extism, so the rules are tested directly.
"""

import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

from .errors import SandboxError
from .netrules import Policy

DEFAULT_MEMORY_MB = 16
DEFAULT_TIMEOUT_MS = 5000
DEFAULT_MAX_HTTP_RESPONSE_BYTES = 1024 * 1024
DEFAULT_MAX_OUTPUT_BYTES = 1024 * 1024
DEFAULT_MAX_CONCURRENCY = 4
DEFAULT_HTTP_REQUESTS_PER_CALL = 20
DEFAULT_HTTP_REQUESTS_PER_MINUTE = 120
WASM_PAGE = 64 * 1024


@dataclass(frozen=True)
class PathGrant:
    host: str
    guest: str
    read_only: bool = False

    @classmethod
    def parse(cls, spec: str) -> "PathGrant":
        """Parse the command-line form HOST[:GUEST][:ro]."""
        parts = spec.split(":")
        read_only = parts[-1] == "ro"
        if read_only:
            parts = parts[:-1]
        if not parts or len(parts) > 2 or not all(p.startswith("/") for p in parts):
            raise ValueError(f"{spec!r}: give HOST[:GUEST][:ro] with absolute paths, e.g. /srv/data:/data:ro")
        return cls(host=parts[0], guest=parts[-1], read_only=read_only)

    def resolved(self) -> "PathGrant":
        """The same grant with its host directory resolved (`..` and symlinks followed), as the
        operating system will open it."""
        return PathGrant(os.path.realpath(self.host), self.guest, self.read_only)

    def covers(self, other: "PathGrant") -> bool:
        """Whether `other` gives no more than this grant: the same or a deeper directory, no write if
        this is read-only. Both directories are compared resolved, so `/granted/../../etc` is /etc."""
        mine, theirs = os.path.realpath(self.host), os.path.realpath(other.host)
        inside = theirs == mine or theirs.startswith(mine.rstrip("/") + "/")
        return inside and (other.read_only or not self.read_only)


@dataclass(frozen=True)
class Grant:
    """The capabilities one call runs with. The defaults are the deny-all grant."""

    # Grant entries (sandbox/netrules.py): "host", "host:port", "scheme://host[:port]", "*.domain", or
    # {"host": ..., "methods": [...], "path_prefix": "/..."}.
    allowed_hosts: tuple = ()
    allowed_paths: tuple[PathGrant, ...] = ()
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_ms: int = DEFAULT_TIMEOUT_MS
    max_http_response_bytes: int = DEFAULT_MAX_HTTP_RESPONSE_BYTES
    max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    config: Mapping[str, object] = field(default_factory=dict)
    secret_env: Mapping[str, str] = field(default_factory=dict)
    # Secrets exoclaw adds to requests to their host, as tables SecretRule.parse reads (HttpSecret.as_table
    # gives them); the plug-in never sees them.
    http_secrets: tuple = ()
    http_requests_per_call: int = DEFAULT_HTTP_REQUESTS_PER_CALL
    http_requests_per_minute: int = DEFAULT_HTTP_REQUESTS_PER_MINUTE

    @cached_property
    def fingerprint(self) -> tuple:
        """Identifies what is compiled into a plug-in (paths, limits). HTTP is checked per request by
        exoclaw's host functions, so hosts are not part of it, nor are config and secrets."""
        return (
            tuple(sorted((p.host, p.guest, p.read_only) for p in self.allowed_paths)),
            self.memory_mb,
            self.timeout_ms,
        )

    @cached_property
    def policy(self) -> Policy:
        """The grant's HTTP rules, parsed. ValueError if an entry cannot be read."""
        return Policy.from_grant(self.allowed_hosts, self.http_secrets)


DENY_ALL = Grant()


def grant_from_fields(row) -> Grant:
    """Build a Grant from anything with CapabilityGrant's fields (a model instance, say), its
    http_secrets rows loaded (prefetch_related), as this may run on the event loop."""
    return Grant(
        allowed_hosts=tuple(row.allowed_hosts),
        allowed_paths=tuple(
            PathGrant(host=p["host"], guest=p.get("guest", p["host"]), read_only=bool(p.get("read_only", False)))
            for p in row.allowed_paths
        ),
        memory_mb=row.memory_mb,
        timeout_ms=row.timeout_ms,
        max_http_response_bytes=row.max_http_response_bytes,
        max_output_bytes=row.max_output_bytes,
        max_concurrency=row.max_concurrency,
        config=dict(row.config),
        secret_env=dict(row.secret_env),
        http_secrets=tuple(s.as_table() for s in row.http_secrets.all()),
        http_requests_per_call=getattr(row, "http_requests_per_call", DEFAULT_HTTP_REQUESTS_PER_CALL),
        http_requests_per_minute=getattr(row, "http_requests_per_minute", DEFAULT_HTTP_REQUESTS_PER_MINUTE),
    )


def effective_grant(rows: Iterable, agent: str | None) -> Grant:
    """The grant for the agent named `agent` among a plug-in's grant rows (their `agent` and
    `http_secrets` loaded): its own, else the plug-in's default, else deny-all. `agent` None: the default."""
    rows = list(rows)
    if agent is not None:
        for row in rows:
            if row.agent_id is not None and row.agent.name == agent:
                return grant_from_fields(row)
    for row in rows:
        if row.agent_id is None:
            return grant_from_fields(row)
    return DENY_ALL


def build_manifest(wasm: bytes, sha256: str, grant: Grant) -> dict:
    """The Extism manifest for a plug-in under a grant. Config is not here: it is set per instance."""
    return {
        "wasm": [{"data": wasm, "hash": sha256}],
        # Extism's own HTTP is replaced by exoclaw's (sandbox/hostfns.py), which checks the grant per
        # request; should it ever be linked, it reaches nothing.
        "allowed_hosts": [],
        "allowed_paths": {(f"ro:{p.host}" if p.read_only else p.host): p.guest for p in grant.allowed_paths},
        "memory": {
            "max_pages": grant.memory_mb * 1024 * 1024 // WASM_PAGE,
            "max_http_response_bytes": grant.max_http_response_bytes,
        },
        "timeout_ms": grant.timeout_ms,
    }


def instance_config(plugin_config: Mapping, grant: Grant, environ: Mapping[str, str]) -> dict[str, str]:
    """The Extism config of one call: the plug-in's config, the grant's, then secrets read from the environment.

    Extism config values are strings, so other JSON values are passed JSON-encoded.
    """
    merged = {**plugin_config, **grant.config}
    config = {k: v if isinstance(v, str) else json.dumps(v) for k, v in merged.items()}
    for key, env_name in grant.secret_env.items():
        if env_name not in environ:
            raise SandboxError("not_found", f"config key {key!r} needs the environment variable {env_name}, which is not set")
        config[key] = environ[env_name]
    return config


def narrowing_violations(stored: Grant, requested: Grant) -> list[str]:
    """What `requested` asks for beyond `stored` (empty if it only narrows it)."""
    problems = []
    stored_rules = stored.policy.rules
    for rule in requested.policy.rules:
        if not any(s.covers(rule) for s in stored_rules):
            problems.append(f"host {rule} is not in the stored grant")
    for path in requested.allowed_paths:
        if not any(s.covers(path) for s in stored.allowed_paths):
            problems.append(f"path {path.host} -> {path.guest}{' (ro)' if path.read_only else ''} is not in the stored grant")
    for name in ("memory_mb", "timeout_ms"):
        if getattr(requested, name) > getattr(stored, name):
            problems.append(f"{name} {getattr(requested, name)} is more than the stored {getattr(stored, name)}")
    return problems
