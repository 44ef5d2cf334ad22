"""A throwaway database on the real PostgreSQL at 127.0.0.1:5432 (trust auth for user `postgres`), for
the tests that run a deployment's several processes on one relational database, as production does."""

import os
import uuid

import pytest

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _connect():
    import psycopg

    return psycopg.connect(ADMIN_DSN, autocommit=True, connect_timeout=3)


def postgres_available() -> bool:
    try:
        with _connect():
            return True
    except Exception:
        return False


@pytest.fixture
def postgres_url():
    """`DATABASE_URL` of a new, empty database, dropped after the test (with its connections).

    In CI a missing PostgreSQL is a failure, never a skip (.ci/run starts it)."""
    if not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not running at 127.0.0.1:5432 (CI=true: .ci/run should have started it)")
        pytest.skip("PostgreSQL is not running at 127.0.0.1:5432")
    name = f"exoclaw_test_{uuid.uuid4().hex[:12]}"
    with _connect() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgres://postgres@127.0.0.1:5432/{name}"
    finally:
        with _connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
