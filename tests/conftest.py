import os
import socket

import pytest

pytest_plugins = ["tests.fakes.fixtures"]


def redis_available(host="127.0.0.1", port=6379) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@pytest.fixture
def redis_url():
    """The real Redis at 127.0.0.1:6379. In CI a missing Redis is a failure, never a skip."""
    if not redis_available():
        if os.environ.get("CI") == "true":
            pytest.fail("Redis is not running at 127.0.0.1:6379 (CI=true: .ci/run should have started it)")
        pytest.skip("Redis is not running at 127.0.0.1:6379")
    return "redis://127.0.0.1:6379/0"

from tests.routing_fixtures import clear_routing_cache  # noqa: E402,F401
from tests.webhooks_fixtures import clear_endpoint_cache, fake_discord, fake_slack, fake_telegram  # noqa: E402,F401
from tests.clients_fixtures import browser_page, chromium, exoclaw_server, proxy, remote_page  # noqa: E402,F401
from tests.runtime_fixtures import connect, fresh_layer  # noqa: E402,F401
from tests.store_fixtures import kv_url, process_store, store, surreal_ws_url  # noqa: E402,F401
from tests.postgres_fixtures import postgres_url  # noqa: E402,F401
