"""The session store against the real embedded engine: schema, durability, ordering, one process."""

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from agents.store import DuplicateRun, InvalidInput, RunNotFound, SessionNotFound, Store, StoreError, StoreLocked
from agents.store.schema import SCHEMA_VERSION
from tests.store_fixtures import a_run

ROOT = Path(__file__).resolve().parent.parent
KEY = "agent:helper:webchat:-:alice"


async def alice(store, idempotency_key=None, running=False):
    """Alice's webchat session and a new run in it, as chat.send starts one."""
    return await a_run(store, KEY, "helper", idempotency_key, running=running, channel="webchat", peer="alice")


async def schema_of(store) -> dict:
    """What the database holds: INFO FOR DB plus INFO FOR TABLE of each table."""
    async def read():
        [info] = await store._q("INFO FOR DB")
        tables = sorted(info["tables"])
        per_table = await store._q(";".join(f"INFO FOR TABLE {t}" for t in tables)) if tables else []
        return {"db": info, "tables": dict(zip(tables, per_table))}

    return await asyncio.wrap_future(store._thread.submit(read()))


@pytest.mark.asyncio
async def test_schema_applies_twice_without_change(kv_url):
    first = Store(kv_url)
    assert await first.open() == {"from": None, "to": SCHEMA_VERSION, "changed": True}
    before = await schema_of(first)
    assert await first.migrate() == {"from": None, "to": SCHEMA_VERSION, "changed": True}, "migrate reports what opening applied"
    await first.aclose()

    second = Store(kv_url)
    assert await second.open() == {"from": SCHEMA_VERSION, "to": SCHEMA_VERSION, "changed": False}
    assert await schema_of(second) == before
    assert set(before["tables"]) == {"meta", "session", "message", "run", "session_key", "idempotency"}
    assert (await second.health())["schema_version"] == SCHEMA_VERSION
    await second.aclose()


@pytest.mark.asyncio
async def test_a_version_1_store_is_upgraded_without_its_seen_update_table(kv_url):
    old = Store(kv_url)
    session, run = await alice(old)
    # What version 1 added to today's schema: a table of webhook deliveries, no longer used.
    await asyncio.wrap_future(old._thread.submit(old._q(
        """DEFINE TABLE seen_update SCHEMAFULL;
        DEFINE FIELD created ON seen_update TYPE datetime DEFAULT time::now() READONLY;
        DEFINE INDEX seen_update_created ON seen_update FIELDS created;
        CREATE seen_update:['telegram', 991];
        UPSERT meta:schema SET version = 1;""")))
    assert "seen_update" in (await schema_of(old))["tables"]
    await old.aclose()

    upgraded = Store(kv_url)
    assert await upgraded.open() == {"from": 1, "to": SCHEMA_VERSION, "changed": True}
    assert "seen_update" not in (await schema_of(upgraded))["tables"]
    assert (await upgraded.current_session(KEY))["id"] == session["id"]
    assert await upgraded.get_run(run["id"]) == run
    assert (await upgraded.health())["ok"] is True
    await upgraded.aclose()


@pytest.mark.asyncio
async def test_write_close_reopen_keeps_everything(kv_url):
    store = Store(kv_url)
    session, run = await alice(store, idempotency_key="msg-1", running=True)
    await store.append_message(session["id"], "user", "what is 2+2?", run_id=run["id"], tokens=7)
    tool_use = {"type": "tool_use", "id": "tu_1", "name": "calc.add", "input": {"a": 2, "b": 2}}
    await store.append_message(session["id"], "assistant", [tool_use], run_id=run["id"])
    await store.record_tool_call(run["id"], tool_use_id="tu_1", name="calc.add", input={"a": 2, "b": 2},
                                 outcome="ok", output="4", duration_ms=1.25)
    await store.append_message(session["id"], "user", [{"type": "tool_result", "tool_use_id": "tu_1", "content": "4"}])
    await store.update_run(run["id"], status="done", stop_reason="end_turn",
                           usage={"input_tokens": 30, "output_tokens": 9})
    before = {
        "session": await store.get_session(session["id"]),
        "messages": (await store.history(session["id"], limit=10))["messages"],
        "run": await store.get_run(run["id"]),
    }
    await store.aclose()

    reopened = Store(kv_url)
    assert await reopened.get_session(session["id"]) == before["session"]
    assert (await reopened.history(session["id"], limit=10))["messages"] == before["messages"]
    assert await reopened.get_run(run["id"]) == before["run"]
    assert (await reopened.current_session(KEY))["id"] == session["id"]
    with pytest.raises(DuplicateRun) as caught:
        await reopened.start_run(KEY, "helper", idempotency_key="msg-1")
    assert caught.value.run == before["run"]
    assert before["session"]["message_count"] == 3
    assert before["session"]["tokens_in"] == 30 and before["session"]["tokens_out"] == 9
    assert before["run"]["tool_calls"][0]["output"] == "4"
    await reopened.aclose()


@pytest.mark.asyncio
@pytest.mark.parametrize("engine", ["mem", "surrealkv"])
async def test_fifty_concurrent_appends_to_one_session_get_seq_1_to_50(engine, kv_url):
    store = Store("mem://" if engine == "mem" else kv_url)
    session, _ = await alice(store)
    seqs = await asyncio.gather(*(store.append_message(session["id"], "user", f"message {i}") for i in range(50)))
    assert sorted(seqs) == list(range(1, 51))
    stored = (await store.history(session["id"], limit=100))["messages"]
    assert [m["seq"] for m in stored] == list(range(1, 51))
    assert sorted(m["content"][0]["text"] for m in stored) == sorted(f"message {i}" for i in range(50))
    assert (await store.get_session(session["id"]))["message_count"] == 50
    await store.aclose()


@pytest.mark.asyncio
async def test_calls_racing_the_first_open_wait_for_the_schema(store):
    # The first call opens the store and applies the schema on the store's thread; calls made
    # meanwhile must not write before it is applied (a session created before its field defaults
    # exist is unreadable afterwards). Start them one loop turn apart, across the opening.
    calls = []
    for i in range(60):
        calls.append(asyncio.ensure_future(store.start_run(f"agent:a:-:-:p{i}", "a")))
        await asyncio.sleep(0)
    started = await asyncio.gather(*calls)
    assert all(session["current"] is True and run["status"] == "queued" for session, run in started)
    assert (await store.list_sessions(limit=100))["total"] == 60


def test_appends_from_threads_and_loops_together_stay_gap_free(store):
    session, _ = store.sync.start_run(KEY, "helper")
    seqs, lock = [], threading.Lock()

    def sync_writer(n):
        for i in range(n):
            seq = store.sync.append_message(session["id"], "user", f"sync {i}")
            with lock:
                seqs.append(seq)

    async def async_writer(n):
        got = await asyncio.gather(*(store.append_message(session["id"], "assistant", f"async {i}") for i in range(n)))
        with lock:
            seqs.extend(got)

    threads = [threading.Thread(target=sync_writer, args=(10,)) for _ in range(3)]
    threads += [threading.Thread(target=asyncio.run, args=(async_writer(10),)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(1, 51))


def test_second_process_on_the_same_path_is_refused(kv_url):
    store = Store(kv_url)
    store.sync.open()
    code = f"from agents.store import Store; Store({kv_url!r}).sync.open()"
    other = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert other.returncode != 0
    assert "StoreLocked" in other.stderr
    assert "already open in another process" in other.stderr and "SURREALDB_URL=ws://" in other.stderr
    store.close()
    after = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert after.returncode == 0, f"the lock should be free once the first store closed: {after.stderr}"


def test_a_process_that_exits_without_closing_the_store_exits_cleanly_and_keeps_its_writes(kv_url):
    code = (f"from agents.store import Store; s = Store({kv_url!r}).sync; "
            "s.append_message(s.start_run('agent:a:-:-:p', 'a')[0]['id'], 'user', 'kept')")
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
    store = Store(kv_url)
    assert [m["seq"] for m in store.sync.history("agent:a:-:-:p")["messages"]] == [1, 2, 3]
    store.close()


def test_an_append_that_returned_survives_the_process_being_killed(kv_url):
    code = (f"import sys; from agents.store import Store; s = Store({kv_url!r}).sync; "
            "sid = s.start_run('agent:a:-:-:p', 'a')[0]['id']; "
            "print(s.append_message(sid, 'user', 'acknowledged'), flush=True); sys.stdin.read()")
    writer = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout.readline().strip() == "1"
    finally:
        writer.kill()
        writer.wait(timeout=30)
    store = Store(kv_url)
    [message] = store.sync.history("agent:a:-:-:p")["messages"]
    assert message["content"][0]["text"] == "acknowledged"
    store.close()


def test_second_store_in_the_same_process_is_refused_too(kv_url):
    store = Store(kv_url)
    store.sync.open()
    other = Store(kv_url)
    with pytest.raises(StoreLocked, match="SurrealDB server"):
        other.sync.open()
    other.close()
    store.close()


@pytest.mark.asyncio
async def test_partial_output_of_an_aborted_run_is_kept(kv_url):
    store = Store(kv_url)
    session, run = await alice(store, running=True)
    await store.append_message(session["id"], "user", "tell me a long story", run_id=run["id"])
    await store.append_message(session["id"], "assistant", "Once upon a ti", run_id=run["id"], interrupted="aborted")
    await store.update_run(run["id"], status="aborted", stop_reason="aborted", usage={"input_tokens": 12, "output_tokens": 4})
    await store.aclose()

    reopened = Store(kv_url)
    history = await reopened.history(KEY)
    partial = history["messages"][-1]
    assert partial["content"] == [{"type": "text", "text": "Once upon a ti"}]
    assert partial["interrupted"] == "aborted" and partial["run_id"] == run["id"]
    run = await reopened.get_run(run["id"])
    assert run["status"] == "aborted" and run["finished"] is not None
    assert history["session"]["status"] == "aborted"
    await reopened.aclose()


async def _hold_writer(store, release: threading.Event):
    """Keep the store's writer busy until `release` is set, so the next write has to queue."""
    async with store._writer:
        await asyncio.get_running_loop().run_in_executor(None, release.wait)


@pytest.mark.asyncio
async def test_a_write_whose_caller_is_cancelled_still_completes(store):
    session, _ = await alice(store)
    release = threading.Event()
    holder = store._thread.submit(_hold_writer(store, release))
    writer = asyncio.create_task(store.append_message(session["id"], "assistant", "said before the abort"))
    await asyncio.sleep(0)  # the task hands its write to the store's loop, where it queues
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    release.set()
    await asyncio.wrap_future(holder)
    # Writes commit in order, so this one lands after the cancelled caller's write.
    assert await store.append_message(session["id"], "user", "next") == 2
    first = (await store.history(session["id"], limit=2))["messages"][0]
    assert first["content"][0]["text"] == "said before the abort"


@pytest.mark.asyncio
async def test_start_run_opens_the_keys_session_and_records_a_queued_run(store):
    session, run = await store.start_run(KEY, "helper", channel="webchat", peer="alice")
    assert (session["key"], session["agent"], session["channel"], session["peer"]) == (KEY, "helper", "webchat", "alice")
    assert (run["session_id"], run["session_key"], run["agent"], run["status"]) == (session["id"], KEY, "helper", "queued")
    assert run["idempotency_key"] is None and run["started"] is None
    assert session["current"] is True and session["previous_id"] is None
    assert (await store.current_session(KEY))["status"] == "queued"
    again, second = await store.start_run(KEY, "helper", channel="webchat", peer="alice")
    assert again["id"] == session["id"], "the key's current session is reused"
    assert [r["id"] for r in await store.runs(session["id"])] == [run["id"], second["id"]]


@pytest.mark.asyncio
async def test_start_run_after_a_reset_records_the_run_in_the_new_session(store):
    old, _ = await store.start_run(KEY, "helper")
    new = await store.reset(KEY)
    session, run = await store.start_run(KEY, "helper")
    assert session["id"] == new["id"] != old["id"] and run["session_id"] == new["id"]


@pytest.mark.asyncio
async def test_start_run_with_a_repeated_idempotency_key_returns_the_first_run_and_writes_nothing(kv_url):
    store = Store(kv_url)
    session, run = await store.start_run(KEY, "helper", idempotency_key="client-7")
    with pytest.raises(DuplicateRun) as caught:
        await store.start_run(KEY, "helper", idempotency_key="client-7")
    assert caught.value.run == run
    other_key, other = await store.start_run("agent:helper:webchat:-:bob", "helper", idempotency_key="client-7")
    assert other["id"] != run["id"], "an idempotency key belongs to one session key"
    _, next_message = await store.start_run(KEY, "helper", idempotency_key="client-8")
    assert next_message["id"] != run["id"], "another idempotency key is another run"
    with pytest.raises(DuplicateRun) as caught:
        await store.start_run(KEY, "helper", idempotency_key="client-8")
    assert caught.value.run == next_message
    await store.aclose()

    reopened = Store(kv_url)
    with pytest.raises(DuplicateRun) as caught:
        await reopened.start_run(KEY, "helper", idempotency_key="client-7")
    assert caught.value.run["id"] == run["id"], "the key is kept in the store, so it holds after a restart"
    assert len(await reopened.runs(session["id"])) == 2
    assert (await reopened.get_session(session["id"]))["status"] == "queued"
    await reopened.aclose()


@pytest.mark.asyncio
async def test_a_duplicate_start_run_for_a_new_key_leaves_no_session_behind(store):
    await store.start_run(KEY, "helper", idempotency_key="k")
    await store.reset(KEY)
    fresh = await store.current_session(KEY)
    with pytest.raises(DuplicateRun):
        await store.start_run(KEY, "helper", idempotency_key="k")
    assert (await store.current_session(KEY))["id"] == fresh["id"]
    assert await store.runs(fresh["id"]) == []


@pytest.mark.asyncio
@pytest.mark.parametrize("engine", ["mem", "surrealkv"])
async def test_concurrent_start_runs_for_a_new_key_share_one_session_and_one_run_per_idempotency_key(engine, kv_url):
    store = Store("mem://" if engine == "mem" else kv_url)
    results = await asyncio.gather(
        *(store.start_run(KEY, "helper", idempotency_key=f"k{i % 5}") for i in range(30)), return_exceptions=True
    )
    started = [r for r in results if not isinstance(r, BaseException)]
    duplicates = [r for r in results if isinstance(r, DuplicateRun)]
    assert len(started) == 5 and len(duplicates) == 25, [r for r in results if isinstance(r, Exception)][:3]
    assert len({session["id"] for session, _ in started}) == 1
    first_by_key = {run["idempotency_key"]: run for _, run in started}
    assert all(d.run == first_by_key[d.run["idempotency_key"]] for d in duplicates)
    assert len(await store.runs(started[0][0]["id"])) == 5
    await store.aclose()


@pytest.mark.asyncio
async def test_start_run_refuses_a_missing_key_or_agent(store):
    with pytest.raises(InvalidInput, match="needs a key and an agent"):
        await store.start_run("", "helper")
    with pytest.raises(InvalidInput, match="needs a key and an agent"):
        await store.start_run(KEY, "")


@pytest.mark.asyncio
async def test_run_lifecycle_stamps_times_and_final_status_is_final(store):
    _, run = await alice(store)
    assert run["status"] == "queued" and run["started"] is None
    running = await store.update_run(run["id"], status="running")
    assert running["started"] is not None and running["finished"] is None
    done = await store.update_run(run["id"], status="error", error="provider returned 529", usage={"input_tokens": 3})
    assert done["finished"] >= done["started"] and done["error"] == "provider returned 529"
    with pytest.raises(InvalidInput, match="already error"):
        await store.update_run(run["id"], status="running")
    with pytest.raises(RunNotFound):
        await store.update_run("nope", status="done")
    with pytest.raises(InvalidInput, match="status must be one of"):
        await store.update_run(run["id"], status="finished")


@pytest.mark.asyncio
async def test_session_token_totals_follow_run_usage(store):
    session, a = await alice(store, running=True)
    await store.update_run(a["id"], usage={"input_tokens": 10, "output_tokens": 1})
    await store.update_run(a["id"], status="done", usage={"input_tokens": 20, "output_tokens": 5})
    _, b = await alice(store, running=True)
    await store.update_run(b["id"], status="done", usage={"input_tokens": 7, "output_tokens": 2})
    totals = await store.get_session(session["id"])
    assert (totals["tokens_in"], totals["tokens_out"]) == (27, 7)


@pytest.mark.asyncio
async def test_tool_calls_are_recorded_with_timing_and_outcome(store):
    _, run = await alice(store, running=True)
    await store.record_tool_call(run["id"], tool_use_id="tu_1", name="http_get.fetch", input={"url": "http://x"},
                                 outcome="denied", error="host x is not granted", duration_ms=0.4)
    await store.record_tool_call(run["id"], tool_use_id="tu_2", name="calc.add", input={"a": 1}, outcome="ok",
                                 output="1", duration_ms=2)
    calls = (await store.get_run(run["id"]))["tool_calls"]
    assert [(c["tool_use_id"], c["outcome"], c["duration_ms"]) for c in calls] == [("tu_1", "denied", 0.4), ("tu_2", "ok", 2.0)]
    assert calls[0]["error"] == "host x is not granted" and calls[0]["started"] is not None
    with pytest.raises(InvalidInput, match="outcome"):
        await store.record_tool_call(run["id"], tool_use_id="t", name="n", input={}, outcome="meh")
    with pytest.raises(RunNotFound):
        await store.record_tool_call("missing", tool_use_id="t", name="n", input={}, outcome="ok")


@pytest.mark.asyncio
async def test_bad_input_gets_a_clear_error(store):
    session, _ = await alice(store)
    with pytest.raises(InvalidInput, match="role must be one of"):
        await store.append_message(session["id"], "robot", "hi")
    with pytest.raises(InvalidInput, match="block 0 .tool_use. is missing a field"):
        await store.append_message(session["id"], "assistant", [{"type": "tool_use", "name": "x"}])
    with pytest.raises(InvalidInput, match="type must be text, tool_use or tool_result"):
        await store.append_message(session["id"], "assistant", [{"type": "image"}])
    with pytest.raises(SessionNotFound):
        await store.append_message("no-such-session", "user", "hi")
    assert (await store.get_session(session["id"]))["message_count"] == 0


@pytest.mark.asyncio
async def test_sync_wrappers_refuse_to_block_an_event_loop(store):
    with pytest.raises(StoreError, match="would block this event loop"):
        store.sync.health()
    assert (await store.health())["ok"] is True


def test_each_key_has_its_own_current_session(store):
    first, _ = store.sync.start_run(KEY, "helper", channel="webchat", peer="alice")
    again, _ = store.sync.start_run(KEY, "helper", channel="webchat", peer="alice")
    assert again["id"] == first["id"]
    assert (first["agent"], first["channel"], first["peer"], first["current"]) == ("helper", "webchat", "alice", True)
    other, _ = store.sync.start_run("agent:helper:webchat:-:bob", "helper", peer="bob")
    assert other["id"] != first["id"] and other["peer"] == "bob"


@pytest.mark.asyncio
async def test_sessions_and_runs_carry_their_owner_and_list_filters_by_it(store):
    mine, run = await store.start_run("agent:a:web:token%3Aalice:p", "a", owner="token:alice", channel="web")
    await store.start_run("agent:a:telegram:bot:7", "a", owner="channel:telegram", channel="telegram")
    assert (mine["owner"], run["owner"]) == ("token:alice", "token:alice")
    assert (await store.get_run(run["id"]))["owner"] == "token:alice"
    page = await store.list_sessions(owner="token:alice")
    assert [s["key"] for s in page["items"]] == [mine["key"]] and page["total"] == 1


@pytest.mark.asyncio
async def test_a_cursor_that_no_page_made_is_refused_clearly(store):
    import base64

    huge = base64.urlsafe_b64encode(b"o" + b"9" * 40).decode()
    with pytest.raises(InvalidInput, match="bad cursor"):
        await store.list_sessions(cursor=huge)
