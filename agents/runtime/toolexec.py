"""The run's two outside parts: the agent's LLM provider and its sandboxed tools."""

from agents.providers import get_provider, request_for

from .loop import ToolOutcome
from .tools import Tool, Toolbox


def make_stream(agent):
    provider = get_provider(agent)

    def stream(messages: list[dict], specs):
        # A copy: the loop appends to its list while the provider may still hold the request.
        return provider.stream(request_for(agent, list(messages), specs))

    return stream
