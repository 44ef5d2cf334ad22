"""Tool discovery: which ABI a plug-in speaks and which tools it offers."""

from .abi import PLAIN, ToolDef, parse_declared, parse_describe, required_export
from .errors import SandboxError
from .host import Host, PluginSpec
from .manifest import Grant

# describe runs with nothing granted and a short leash: it must only say what the plug-in offers.
DISCOVERY_GRANT = Grant(timeout_ms=2000)


def discover(host: Host, spec: PluginSpec, declared_tools) -> tuple[str, list[ToolDef]]:
    present = host.exports(spec, DISCOVERY_GRANT, ["describe", "call", "handle_tool_call"])
    if "describe" in present:
        abi, tools = parse_describe(host.run(spec, "describe", b"", DISCOVERY_GRANT).output)
        needed = required_export(abi)
        if needed and needed not in present:
            raise SandboxError(
                "invalid_output", f"describe announces {abi}-style tools, but the plug-in has no {needed!r} export to run them"
            )
        return abi, tools
    tools = parse_declared(declared_tools)
    if not tools:
        raise SandboxError(
            "not_found", "the plug-in exports no describe; declare its tools (export name, description, input schema)"
        )
    exported = host.exports(spec, DISCOVERY_GRANT, [t.name for t in tools])
    missing = [t.name for t in tools if t.name not in exported]
    if missing:
        raise SandboxError("not_found", f"declared tool(s) {', '.join(missing)} are not exports of the plug-in")
    return PLAIN, tools
