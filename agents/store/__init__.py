"""The session store (SurrealDB). One Store per process: `get_store()`.

    from agents.store import get_store
    store = get_store()
    session, run = await store.start_run(route.session_key, "helper", channel="web", peer="alice")
    seq = await store.append_message(session["id"], "user", "hello", run_id=run["id"])
    store.sync.history(session["key"])  # from sync code: admin views, management commands

See docs/sessions.md for every method and what it returns.
"""

import threading

from .core import Store, redact
from .errors import (
    DuplicateRun,
    InvalidInput,
    NotFound,
    RunNotFound,
    SchemaTooNew,
    SessionNotFound,
    StoreError,
    StoreLocked,
)
from .shapes import jsonable

__all__ = [
    "DuplicateRun", "InvalidInput", "NotFound", "RunNotFound", "SchemaTooNew", "SessionNotFound", "Store",
    "StoreError", "StoreLocked", "close_store", "get_store", "jsonable", "redact", "store_from_settings",
]

_store: Store | None = None
_lock = threading.Lock()


def store_from_settings() -> Store:
    from django.conf import settings

    return Store(
        settings.SURREALDB_URL,
        namespace=settings.SURREALDB_NS,
        database=settings.SURREALDB_DB,
        username=settings.SURREALDB_USER,
        password=settings.SURREALDB_PASS,
        sync_writes=settings.SURREALDB_SYNC_WRITES,
    )


def get_store() -> Store:
    """This process's store, built from settings on first use (it connects on its first call)."""
    global _store
    with _lock:
        if _store is None:
            _store = store_from_settings()
        return _store


def close_store() -> None:
    """Close this process's store; the next get_store() builds a fresh one (tests, settings changes)."""
    global _store
    with _lock:
        store, _store = _store, None
    if store is not None:
        store.close()
