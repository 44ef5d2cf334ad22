import pytest

from routing.resolver import clear_cache


@pytest.fixture(autouse=True)
def clear_routing_cache():
    """The resolver's cache is process-wide and a test's rolled-back rows send no signals, so every
    test starts from an empty cache."""
    clear_cache()
    yield
    clear_cache()
