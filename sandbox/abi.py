"""Tool plug-in ABIs: reading what `describe` says and translating tool calls to and from bytes.

Three conventions are understood (docs/plugins.md has the details):
- MCP-style, as in hyper-mcp and mcp.run servlets: `describe` returns {"tools": [{"name", "description",
  "inputSchema"}]}, `call` takes {"params": {"name", "arguments"}} and returns {"content": [{"type": "text",
  "text"}], "isError"}.
- exoclaw's own: `describe` returns one tool {"name", "description", "input_schema"} (or {"type":
  "channel_adapter"}), `handle_tool_call` takes the arguments and returns {"content": str, "is_error": bool} or
  plain text.
- plain: no `describe`; the operator declares each export as a tool.
"""

import json
import re
from dataclasses import dataclass, field

from .errors import SandboxError

MCP = "mcp"
EXOCLAW = "exoclaw"
PLAIN = "plain"
CHANNEL_ADAPTER = "channel_adapter"

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
MAX_DESCRIPTION = 4096


@dataclass(frozen=True)
class ToolDef:
    """One tool as discovered or declared. `input_arg` (plain ABI only) names the string argument passed as raw input."""

    name: str
    description: str
    input_schema: dict = field(default_factory=lambda: {"type": "object"})
    input_arg: str = ""

    def as_json(self) -> dict:
        data = {"name": self.name, "description": self.description, "input_schema": self.input_schema}
        if self.input_arg:
            data["input_arg"] = self.input_arg
        return data

    @classmethod
    def from_json(cls, data: dict) -> "ToolDef":
        return cls(data["name"], data.get("description", ""), data.get("input_schema", {}), data.get("input_arg", ""))


def _tool(name, description, schema, where: str, input_arg="") -> ToolDef:
    if not isinstance(name, str) or not TOOL_NAME.match(name):
        raise SandboxError("invalid_output", f"{where}: tool name {name!r} is not 1-64 letters, digits, _ or -")
    if not isinstance(description, str) or len(description) > MAX_DESCRIPTION:
        raise SandboxError("invalid_output", f"{where}: tool {name}'s description must be a string of at most 4096 characters")
    if not isinstance(schema, dict) or schema.get("type", "object") != "object":
        raise SandboxError("invalid_output", f"{where}: tool {name}'s input schema must be a JSON object schema of type object")
    if not isinstance(input_arg, str):
        raise SandboxError("invalid_output", f"{where}: tool {name}'s input_arg must be a string")
    return ToolDef(name, description, schema, input_arg)


def parse_describe(output: bytes) -> tuple[str, list[ToolDef]]:
    """The ABI and tools a plug-in's `describe` output announces. Anything malformed is an invalid_output error."""
    try:
        data = json.loads(output)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SandboxError("invalid_output", f"describe did not return JSON ({exc})") from None
    if not isinstance(data, dict):
        raise SandboxError("invalid_output", "describe must return a JSON object")
    if "tools" in data:
        tools = data["tools"]
        if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
            raise SandboxError("invalid_output", 'describe: "tools" must be a list of objects')
        parsed = [_tool(t.get("name"), t.get("description", ""), t.get("inputSchema"), "describe") for t in tools]
        names = [t.name for t in parsed]
        if len(set(names)) != len(names):
            raise SandboxError("invalid_output", "describe lists the same tool name twice")
        return MCP, parsed
    if data.get("type") == "channel_adapter":
        return CHANNEL_ADAPTER, []
    if "name" in data:
        return EXOCLAW, [_tool(data["name"], data.get("description", ""), data.get("input_schema"), "describe")]
    raise SandboxError("invalid_output", 'describe returned neither {"tools": [...]} nor a tool with a "name"')


def parse_declared(declared) -> list[ToolDef]:
    """Validate the tools an operator declared for a plain plug-in."""
    if not isinstance(declared, list) or not all(isinstance(t, dict) for t in declared):
        raise SandboxError("invalid_output", "declared tools must be a list of objects")
    return [
        _tool(t.get("name"), t.get("description", ""), t.get("input_schema", {"type": "object"}), "declared tools", t.get("input_arg", ""))
        for t in declared
    ]


def required_export(abi: str) -> str | None:
    """The export a plug-in of this ABI must have besides describe."""
    return {MCP: "call", EXOCLAW: "handle_tool_call"}.get(abi)


def encode_call(abi: str, tool: ToolDef, arguments: dict) -> tuple[str, bytes]:
    """The export to call and the input bytes for one tool call. ValueError if the arguments cannot be passed."""
    if abi == MCP:
        return "call", json.dumps({"method": "tools/call", "params": {"name": tool.name, "arguments": arguments}}).encode()
    if abi == EXOCLAW:
        return "handle_tool_call", json.dumps(arguments).encode()
    if tool.input_arg:
        value = arguments.get(tool.input_arg)
        if not isinstance(value, str):
            raise ValueError(f"tool {tool.name} needs a string argument {tool.input_arg!r}")
        return tool.name, value.encode()
    return tool.name, json.dumps(arguments).encode()


def _text(output: bytes) -> str:
    try:
        return output.decode()
    except UnicodeDecodeError:
        raise SandboxError("invalid_output", "the plug-in returned bytes that are not UTF-8 text") from None


def decode_result(abi: str, output: bytes) -> tuple[str, bool]:
    """The tool's text content and whether the tool reported an error."""
    text = _text(output)
    if abi == MCP:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise SandboxError("invalid_output", "call did not return JSON; the MCP-style ABI needs {\"content\": [...]}") from None
        if not isinstance(data, dict) or not isinstance(data.get("content"), list):
            raise SandboxError("invalid_output", 'call must return {"content": [{"type": "text", "text": ...}], "isError": bool}')
        parts = []
        for item in data["content"]:
            if not isinstance(item, dict):
                raise SandboxError("invalid_output", "call returned a content item that is not an object")
            if item.get("type") == "text" and isinstance(item.get("text"), str):
                parts.append(item["text"])
            else:
                parts.append(f"[{item.get('type', 'unknown')} content{' ' + item['mimeType'] if 'mimeType' in item else ''}]")
        return "\n".join(parts), bool(data.get("isError", False))
    if abi == EXOCLAW:
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return text, False
        if isinstance(data, dict) and isinstance(data.get("content"), str):
            return data["content"], bool(data.get("is_error", False))
        return text, False
    return text, False
