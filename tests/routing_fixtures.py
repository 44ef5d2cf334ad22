import pytest

from agents.lookup import clear_cache as clear_agent_cache
from routing.resolver import clear_cache


@pytest.fixture(autouse=True)
def clear_routing_cache():
    """The resolver's and the agent lookup's caches are process-wide and a test's rolled-back rows
    send no signals, so every test starts from empty caches."""
    clear_cache()
    clear_agent_cache()
    yield
    clear_cache()
    clear_agent_cache()
