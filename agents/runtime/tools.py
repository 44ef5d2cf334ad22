"""Which plugin tools an agent may use, and the names the LLM sees for them.

An agent's allowlist (`Agent.tools`) holds patterns: `plugin` or `plugin.*` (every tool of a plugin),
`plugin.tool` (one tool) and `*` (everything). Providers restrict tool names to
`^[a-zA-Z0-9_-]{1,64}$`, so `plugin.tool` is offered as `plugin__tool`, shortened with a hash suffix
when it would be too long, and the loop maps the LLM's name back through `Toolbox`.
"""

import hashlib
import re
from dataclasses import dataclass, field

SAFE_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
MAX_NAME = 64


def allowed(patterns: list[str], plugin: str, tool: str) -> bool:
    for p in patterns:
        if p == "*" or p == plugin or p == f"{plugin}.*" or p == f"{plugin}.{tool}":
            return True
    return False


def safe_name(plugin: str, tool: str) -> str:
    raw = re.sub(r"[^a-zA-Z0-9_-]", "_", f"{plugin}__{tool}")
    if len(raw) <= MAX_NAME and raw == f"{plugin}__{tool}":
        return raw
    # Replaced characters or truncation could make two tools collide; the hash keeps them apart.
    digest = hashlib.sha256(f"{plugin}.{tool}".encode()).hexdigest()[:8]
    return f"{raw[: MAX_NAME - 9]}_{digest}"


@dataclass(frozen=True)
class Tool:
    plugin: str
    name: str
    description: str
    input_schema: dict

    @property
    def qualified(self) -> str:
        return f"{self.plugin}.{self.name}"


@dataclass
class Toolbox:
    """The tools one run may call, keyed by the provider-safe name the LLM sees."""

    patterns: list[str]
    by_safe_name: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def build(cls, patterns: list[str], tools: list[Tool]) -> "Toolbox":
        box = cls(list(patterns))
        for t in tools:
            if allowed(patterns, t.plugin, t.name):
                box.by_safe_name[safe_name(t.plugin, t.name)] = t
        return box

    def specs(self) -> list[dict]:
        """Tool definitions for the LLM request, in a stable order."""
        return [
            {"name": n, "description": t.description or t.qualified, "input_schema": t.input_schema or {"type": "object"}}
            for n, t in sorted(self.by_safe_name.items())
        ]

    def lookup(self, safe: str) -> Tool | None:
        """The tool behind an LLM-chosen name, checked against the allowlist again (the LLM may invent names)."""
        t = self.by_safe_name.get(safe)
        return t if t is not None and allowed(self.patterns, t.plugin, t.name) else None
