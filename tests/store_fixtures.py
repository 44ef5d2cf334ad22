"""Fixtures for the session store: a fresh embedded store per test, the process store, and the
test-only ws:// stand-in server (tests/surreal_ws_server.py)."""

import pytest

from agents.store import Store, close_store, get_store


@pytest.fixture
def store():
    """A fresh in-memory store of its own."""
    s = Store("mem://")
    yield s
    s.close()


@pytest.fixture
def kv_url(tmp_path):
    """An on-disk embedded store location in this test's temporary directory."""
    return f"surrealkv://{tmp_path / 'sessions'}"


@pytest.fixture
def process_store():
    """The process's store as get_store() hands it out (mem:// in the test settings), fresh per test."""
    close_store()
    yield get_store()
    close_store()


@pytest.fixture
def surreal_ws_url():
    """ws:// URL of a stand-in SurrealDB server over an in-memory engine, for clients on any loop."""
    from tests.surreal_ws_server import ServerThread

    server = ServerThread("mem://")
    yield server.url
    server.stop()


def run_surql(store: Store, surql: str, vars: dict | None = None) -> list:
    """Test set-up only (e.g. backdating a session): raw SurrealQL on the store's own loop."""
    return store._thread.submit(store._q(surql, vars)).result()


async def a_run(store: Store, key: str, agent: str = "helper", idempotency_key: str | None = None, *,
                running: bool = False, **route) -> tuple[dict, dict]:
    """(session, run) as the product makes them: `start_run` (chat.send's one write: the key's current
    session, created on first use, and a queued run), then with `running` the worker's first write,
    `update_run(status="running")`. The session is as `start_run` returns it (as it was opened)."""
    session, run = await store.start_run(key, agent, idempotency_key, **route)
    if running:
        run = await store.update_run(run["id"], status="running")
    return session, run


def a_run_sync(store: Store, key: str, agent: str = "helper", idempotency_key: str | None = None, *,
               running: bool = False, **route) -> tuple[dict, dict]:
    """`a_run` for sync tests, through `store.sync`."""
    session, run = store.sync.start_run(key, agent, idempotency_key, **route)
    if running:
        run = store.sync.update_run(run["id"], status="running")
    return session, run
