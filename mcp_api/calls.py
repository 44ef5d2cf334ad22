"""What /mcp does, without the wire: the tools a principal sees, and one call of one of them in the
sandbox, recorded in the session store as the principal's.

Each call is a run in the session `agent:-:mcp:<principal>:<client>` (no agent; the `mcp` channel;
the principal as account and owner; the MCP client's name as peer), so the session browser and
`sessions.list`/`history` show it like any conversation: the call (a `tool_use` block), its result
(a `tool_result` block) and, on the run, the tool call with its outcome and duration.

The plugin runs under its default grant (grant scope None): an MCP client is not one of exoclaw's
agents, so no agent's grant applies.
"""

import asyncio
import logging
from dataclasses import dataclass

import anyio

from agents.runtime.persist import outcome_of
from agents.store import get_store
from common.tools import ToolResult
from routing.resolver import Message, session_key
from sandbox.tools import ToolSpec, call_tool, list_tools

from .auth import Principal, sees_plugin

log = logging.getLogger(__name__)

CHANNEL = "mcp"
NO_AGENT = "-"
MAX_CLIENT_NAME = 64


@dataclass(frozen=True)
class Visible:
    name: str
    description: str
    input_schema: dict


def _schema(spec: ToolSpec) -> dict:
    schema = dict(spec.input_schema or {})
    schema.setdefault("type", "object")
    return schema


async def visible_tools(principal: Principal) -> list[Visible]:
    """The enabled plugins' tools the principal may see, named `plugin.tool`."""
    return [
        Visible(t.qualified_name, t.description or t.qualified_name, _schema(t))
        for t in await list_tools()
        if sees_plugin(principal, t.plugin)
    ]


async def find_tool(principal: Principal, name: str) -> ToolSpec | None:
    """The tool behind an MCP name, or None when it does not exist or the principal may not see it."""
    plugin, _, tool = name.partition(".")
    if not sees_plugin(principal, plugin):
        return None
    return next((t for t in await list_tools() if t.plugin == plugin and t.name == tool), None)


def peer_of(client: str) -> str:
    """The MCP client's name as the session's peer: printable text, at most MAX_CLIENT_NAME characters."""
    text = client.encode("utf-8", "ignore").decode("utf-8")
    return "".join(ch for ch in text if ch.isprintable())[:MAX_CLIENT_NAME].strip() or "-"


def key_for(principal: Principal, client: str) -> str:
    return session_key("", Message(channel=CHANNEL, account=principal.name, peer=peer_of(client)))


async def _begin(principal: Principal, client: str, tool: ToolSpec, arguments: dict) -> tuple[dict, dict]:
    store = get_store()
    session, run = await store.start_run(
        key_for(principal, client), NO_AGENT, channel=CHANNEL, account=principal.name, peer=peer_of(client),
        owner=principal.name,
    )
    await store.update_run(run["id"], status="running")
    use = {"type": "tool_use", "id": f"mcp_{run['id']}", "name": tool.qualified_name, "input": arguments}
    await store.append_message(session["id"], "assistant", [use], run_id=run["id"])
    return session, run


async def _finish(session: dict, run: dict, tool: ToolSpec, arguments: dict, result: ToolResult, status: str) -> None:
    store = get_store()
    call_id = f"mcp_{run['id']}"
    block = {"type": "tool_result", "tool_use_id": call_id, "content": result.content, "is_error": result.is_error}
    await store.append_message(session["id"], "user", [block], run_id=run["id"])
    outcome = outcome_of({"is_error": result.is_error, "error_kind": result.error_kind})
    await store.record_tool_call(
        run["id"], call_id, tool.qualified_name, arguments, outcome,
        output=None if result.is_error else result.content, error=result.content if result.is_error else None,
        duration_ms=round(result.duration_ms, 3),
    )
    await store.update_run(run["id"], status=status, error=result.content if status == "error" else None)


async def call(principal: Principal, client: str, tool: ToolSpec, arguments: dict) -> ToolResult:
    """Run `tool` under its plugin's default grant and record it. Cancelling the awaiting task stops the
    plugin (the call is recorded as cancelled and the run as aborted) and raises CancelledError."""
    session, run = await _begin(principal, client, tool, arguments)
    cancel = asyncio.Event()
    running = asyncio.ensure_future(call_tool(tool.plugin, tool.name, arguments, grant_scope=None, cancel=cancel))
    try:
        result = await asyncio.shield(running)
    except asyncio.CancelledError:
        cancel.set()
        # The caller is cancelled; what remains (stopping the plugin, recording the call) must not be.
        with anyio.CancelScope(shield=True):
            result = await running
            await _finish(session, run, tool, arguments, result, "aborted")
        raise
    except Exception:
        log.exception("MCP call of %s failed", tool.qualified_name)
        await get_store().update_run(run["id"], status="error", error="the call failed inside exoclaw")
        raise
    await _finish(session, run, tool, arguments, result, "done")
    return result
