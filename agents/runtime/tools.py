"""Which plugin tools an agent may use.

An agent's allowlist (`Agent.tools`) holds patterns: `plugin` or `plugin.*` (every tool of a plugin),
`plugin.tool` (one tool) and `*` (everything). Tools are named `plugin.tool` throughout; the
providers map those names to what their APIs accept (`agents.providers.base.ToolNameMap`).
"""

from dataclasses import dataclass, field

from agents.providers.base import ToolSpec


def allowed(patterns: list[str], plugin: str, tool: str) -> bool:
    return any(p == "*" or p == plugin or p == f"{plugin}.*" or p == f"{plugin}.{tool}" for p in patterns)


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
    """The tools one run may call, by qualified name."""

    patterns: list[str]
    tools: dict[str, Tool] = field(default_factory=dict)

    @classmethod
    def build(cls, patterns: list[str], tools: list[Tool]) -> "Toolbox":
        box = cls(list(patterns))
        box.tools = {t.qualified: t for t in tools if allowed(patterns, t.plugin, t.name)}
        return box

    def specs(self) -> tuple[ToolSpec, ...]:
        """Tool definitions for the LLM request, in a stable order."""
        return tuple(
            ToolSpec(n, t.description or n, t.input_schema or {"type": "object"}) for n, t in sorted(self.tools.items())
        )

    def lookup(self, name: str) -> Tool | None:
        """The tool behind an LLM-chosen name, checked against the allowlist again (the LLM may invent names)."""
        t = self.tools.get(name)
        return t if t is not None and allowed(self.patterns, t.plugin, t.name) else None
