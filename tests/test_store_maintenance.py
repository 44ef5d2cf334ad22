"""prunesessions and surreal_migrate while a real `manage.py serve` holds the embedded session store:
the commands ask the server over /ws (sessions.prune, store.migrate), and work directly once it stops."""

import asyncio
import os
import subprocess
import sys

import pytest

from agents.store import Store
from agents.store.schema import SCHEMA_VERSION
from exoclaw.client import Gateway
from tests.gateway_support import call, communicator, connected, error_of, make_token  # noqa: F401
from tests.runtime_cluster import ROOT, Proc, free_port
from tests.store_fixtures import a_run_sync, run_surql


@pytest.fixture
def deployment(tmp_path, kv_url):
    """Environment of a one-process deployment on an embedded store holding an old and a new session."""
    port = free_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "exoclaw.settings",
        "EXOCLAW_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "SURREALDB_URL": kv_url,
        "EXOCLAW_BIND": f"127.0.0.1:{port}",
        "REDIS_URL": "",
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("EXOCLAW_TOKEN", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True,
                   capture_output=True)
    store = Store(kv_url)
    try:
        old, old_run = a_run_sync(store, "agent:a:-:-:old", "a")
        store.sync.append_message(old["id"], "user", "long ago", run_id=old_run["id"])
        a_run_sync(store, "agent:a:-:-:new", "a")
        run_surql(store, "UPDATE type::thing('session', $id) SET updated = time::now() - 40d", {"id": old["id"]})
    finally:
        store.close()
    return env, port


def command(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


async def session_keys(port: int) -> list[str]:
    gw = await Gateway.connect(f"ws://127.0.0.1:{port}/ws")
    try:
        return sorted(s["key"] for s in (await gw.call("sessions.list", {}))["sessions"])
    finally:
        await gw.close()


def test_prunesessions_and_surreal_migrate_work_through_a_serving_server_and_directly_once_it_stops(deployment):
    env, port = deployment
    server = Proc([sys.executable, "manage.py", "serve"], env, f"Listening on TCP address 127.0.0.1:{port}")
    try:
        server.wait_ready("manage.py serve")

        counted = command(env, "prunesessions", "--older-than", "30d", "--dry-run")
        assert counted.returncode == 0, counted.stderr
        assert counted.stdout.strip() == "would delete 1 session, 1 message, 1 run"
        assert f"held by the running server; asking it at ws://127.0.0.1:{port}/ws" in counted.stderr
        assert asyncio.run(session_keys(port)) == ["agent:a:-:-:new", "agent:a:-:-:old"], "a dry run deleted"

        migrated = command(env, "surreal_migrate")
        assert migrated.returncode == 0, migrated.stderr
        assert migrated.stdout.strip() == f"schema version {SCHEMA_VERSION} already applied, nothing changed"

        pruned = command(env, "prunesessions", "--older-than", "30d")
        assert pruned.returncode == 0, pruned.stderr
        assert pruned.stdout.strip() == "deleted 1 session, 1 message, 1 run"
        assert asyncio.run(session_keys(port)) == ["agent:a:-:-:new"]
    finally:
        server.stop()

    # Stopped: the command opens the store itself (no server to ask) and finds nothing more to prune.
    direct = command(env, "prunesessions", "--older-than", "30d", "--dry-run")
    assert direct.returncode == 0, direct.stderr
    assert direct.stdout.strip() == "would delete 0 sessions, 0 messages, 0 runs"
    assert "asking it" not in direct.stderr


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_the_maintenance_methods_need_the_admin_scope(make_token):  # noqa: F811
    raw = await make_token(["sessions:read", "sessions:write"])
    c = await connected(communicator(headers=[("Authorization", f"Bearer {raw}")]))
    assert error_of(await call(c, "sessions.prune", {"older_than": "30d", "dry_run": True})) == (-32002, "missing_scope")
    assert error_of(await call(c, "store.migrate", rid=2)) == (-32002, "missing_scope")
    await c.disconnect()


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_sessions_prune_explains_a_bad_age(make_token, process_store):  # noqa: F811
    raw = await make_token(["admin"])
    c = await connected(communicator(headers=[("Authorization", f"Bearer {raw}")]))
    reply = await call(c, "sessions.prune", {"older_than": "a month"})
    assert error_of(reply) == (-32602, "invalid_params")
    assert "not a duration: 'a month'" in reply["error"]["message"]
    await c.disconnect()
