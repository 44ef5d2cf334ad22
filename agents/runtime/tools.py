"""The tools one run may call.

An agent's allowlist (`Agent.tools`) holds patterns: `plugin` or `plugin.*` (every tool of a plugin),
`plugin.tool` (one tool) and `*` (everything); `sandbox.tools.tool_allowed` is the one place that
matches them. Tools are named `plugin.tool` throughout; the providers map those names to what
their APIs accept (`agents.providers.base.ToolNameMap`).
"""

from dataclasses import dataclass, field

from agents.providers.base import ToolSpec
from sandbox.tools import ToolSpec as SandboxTool
from sandbox.tools import tool_allowed


@dataclass
class Toolbox:
    patterns: list[str]
    tools: dict[str, SandboxTool] = field(default_factory=dict)

    @classmethod
    def build(cls, patterns: list[str], tools: list[SandboxTool]) -> "Toolbox":
        box = cls(list(patterns))
        box.tools = {t.qualified_name: t for t in tools if tool_allowed(patterns, t.plugin, t.name)}
        return box

    def specs(self) -> tuple[ToolSpec, ...]:
        """Tool definitions for the LLM request, in a stable order."""
        return tuple(
            ToolSpec(n, t.description or n, t.input_schema or {"type": "object"}) for n, t in sorted(self.tools.items())
        )

    def lookup(self, name: str) -> SandboxTool | None:
        """The tool behind an LLM-chosen name, checked against the allowlist again: the LLM may invent names."""
        t = self.tools.get(name)
        return t if t is not None and tool_allowed(self.patterns, t.plugin, t.name) else None
