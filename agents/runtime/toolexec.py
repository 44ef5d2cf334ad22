"""The run's two outside parts: the agent's LLM provider and its sandboxed tools."""

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


def make_executor(agent):
    async def execute(tool, arguments: dict) -> ToolOutcome:
        # Cancelling this task (an abort) stops the plugin inside the sandbox at once.
        result = await call_tool(tool.plugin, tool.name, arguments, agent_name=agent.name)
        return ToolOutcome(result.content, result.is_error, result.error_kind, result.duration_ms)

    return execute
