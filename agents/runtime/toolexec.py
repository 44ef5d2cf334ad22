"""The run's two outside parts: the agent's LLM provider and its sandboxed tools."""

import asyncio

from agents.providers import get_provider, request_for
from sandbox.tools import call_tool, list_tools

from .loop import ToolOutcome
from .tools import Toolbox


def make_stream(agent):
    provider = get_provider(agent)

    def stream(messages: list[dict], specs):
        # A copy: the loop appends to its list while the provider may still hold the request.
        return provider.stream(request_for(agent, list(messages), specs))

    return stream


async def load_toolbox(agent) -> Toolbox:
    patterns = list(agent.tools or [])
    return Toolbox.build(patterns, await list_tools(patterns) if patterns else [])


# How long an aborted run waits for the sandbox to confirm that a plugin stopped. The sandbox keeps
# stopping it after that (at the latest the grant's timeout ends it); the run does not wait longer.
STOP_GRACE_SECONDS = 1.0


def make_executor(agent):
    async def execute(tool, arguments: dict) -> ToolOutcome:
        call = asyncio.ensure_future(call_tool(tool.plugin, tool.name, arguments, agent_name=agent.name))
        try:
            result = await asyncio.shield(call)
        except asyncio.CancelledError:
            # Cancelling the call is what stops the plugin inside the sandbox (Extism's cancel handle).
            call.cancel()
            await asyncio.wait({call}, timeout=STOP_GRACE_SECONDS)
            raise
        return ToolOutcome(result.content, result.is_error, result.error_kind, result.duration_ms)

    return execute
