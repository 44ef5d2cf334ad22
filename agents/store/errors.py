"""Typed errors of the session store; callers map these once (gateway error codes, admin 404s)."""


class StoreError(Exception):
    """The session store failed or was misused."""


class StoreLocked(StoreError):
    """Another process holds the embedded store open."""


class SchemaTooNew(StoreError):
    """The database was migrated by newer code than this one."""


class NotFound(StoreError):
    """A session, run or message does not exist."""


class SessionNotFound(NotFound):
    pass


class RunNotFound(NotFound):
    pass


class InvalidInput(StoreError, ValueError):
    """Bad arguments: a malformed content block, an unknown role or status, a bad cursor or age."""


class DuplicateRun(StoreError):
    """A run with this idempotency key already exists for the session key; `.run` is that run."""

    def __init__(self, run: dict):
        super().__init__(f"run {run['id']} already has idempotency key {run['idempotency_key']!r}")
        self.run = run
