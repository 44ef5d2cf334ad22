"""surreal_migrate and prunesessions, through call_command against the process store."""

import io

import pytest
from django.core.management import CommandError, call_command

from agents.store import Store, close_store
from agents.store.schema import SCHEMA_VERSION
from tests.runtime_cluster import free_port
from tests.store_fixtures import a_run_sync, run_surql


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_surreal_migrate_applies_the_schema_to_an_empty_store(process_store):
    out, err = run("surreal_migrate")
    assert out.strip() == f"schema version {SCHEMA_VERSION} applied (was an empty store)"
    assert "mem://" in err and "Done in" in err


def test_surreal_migrate_on_an_already_migrated_store(kv_url, settings):
    first = Store(kv_url)
    first.sync.open()
    first.close()
    settings.SURREALDB_URL = kv_url
    close_store()
    try:
        out, _ = run("surreal_migrate")
    finally:
        close_store()
    assert out.strip() == f"schema version {SCHEMA_VERSION} already applied, nothing changed"


def test_prunesessions_counts_on_a_dry_run_then_deletes(process_store):
    store = process_store
    old, old_run = a_run_sync(store, "agent:a:-:-:old", "a")
    store.sync.append_message(old["id"], "user", "long ago", run_id=old_run["id"])
    new, _ = a_run_sync(store, "agent:a:-:-:new", "a")
    run_surql(store, "UPDATE type::thing('session', $id) SET updated = time::now() - 40d", {"id": old["id"]})

    out, err = run("prunesessions", "--older-than", "30d", "--dry-run")
    assert out.strip() == "would delete 1 session, 1 message, 1 run"
    assert "Counting sessions idle for more than 30d" in err
    assert store.sync.list_sessions()["total"] == 2

    out, _ = run("prunesessions", "--older-than", "30d")
    assert out.strip() == "deleted 1 session, 1 message, 1 run"
    assert [s["id"] for s in store.sync.list_sessions()["items"]] == [new["id"]]


def test_prunesessions_explains_a_bad_age():
    with pytest.raises(CommandError, match="--older-than: not a duration: 'a month'"):
        call_command("prunesessions", "--older-than", "a month")


def test_serve_refuses_to_start_on_an_embedded_store_another_store_holds(kv_url, settings, monkeypatch, db):
    def started(*args):
        raise AssertionError("serve started daphne although the session store is held elsewhere")

    monkeypatch.setattr("daphne.cli.CommandLineInterface.run", started)
    holder = Store(kv_url)
    holder.sync.open()
    settings.SURREALDB_URL = kv_url
    close_store()
    try:
        with pytest.raises(CommandError, match="already open in another process.*SURREALDB_URL=ws://"):
            call_command("serve", "--bind", "127.0.0.1:7299")
    finally:
        close_store()
        holder.close()


@pytest.mark.parametrize("command", [["surreal_migrate"], ["prunesessions", "--older-than", "30d"]])
def test_commands_explain_an_embedded_store_held_elsewhere_when_no_server_answers(kv_url, settings, command):
    holder = Store(kv_url)
    holder.sync.open()
    settings.SURREALDB_URL = kv_url
    url = f"ws://127.0.0.1:{free_port()}/ws"  # nothing listens there
    close_store()
    try:
        with pytest.raises(CommandError, match=r"(?s)already open in another process \(pid \d+\).*"
                           rf"Asking the running server at {url} failed too: Cannot connect"):
            call_command(*command, "--url", url)
    finally:
        close_store()
        holder.close()
