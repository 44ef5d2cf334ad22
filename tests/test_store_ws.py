"""The store through the real SDK's ws:// client, against the test-only stand-in server."""

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from agents.store import DuplicateRun, Store, StoreError
from tests.store_fixtures import a_run
from tests.surreal_ws_server import ServerThread

ROOT = Path(__file__).resolve().parent.parent
KEY = "agent:helper:webchat:-:alice"

APPENDER = """
import asyncio, sys
from agents.store import Store

async def main(url, session_id, tag):
    store = Store(url)
    seqs = await asyncio.gather(*(store.append_message(session_id, "user", f"{tag} {i}") for i in range(25)))
    print(" ".join(map(str, seqs)))
    await store.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


@pytest.mark.asyncio
async def test_store_works_through_the_sdk_ws_client(surreal_ws_url):
    store = Store(surreal_ws_url)
    assert store.embedded is False
    session, _ = await store.start_run(KEY, "helper", peer="alice")
    await store.append_message(session["id"], "user", "hello over ws")
    history = await store.history(KEY)
    assert [m["content"][0]["text"] for m in history["messages"]] == ["hello over ws"]
    assert (await store.health())["engine"] == "server"
    await store.aclose()


def test_two_processes_appending_to_one_session_through_a_server_stay_gap_free(surreal_ws_url):
    store = Store(surreal_ws_url)
    session, _ = store.sync.start_run(KEY, "helper", peer="alice")
    procs = [
        subprocess.Popen([sys.executable, "-c", APPENDER, surreal_ws_url, session["id"], tag], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for tag in ("first", "second")
    ]
    seqs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        seqs += [int(x) for x in out.split()]
    assert sorted(seqs) == list(range(1, 51))
    texts = [m["content"][0]["text"] for m in store.sync.history(session["id"], limit=50)["messages"]]
    assert sorted(texts) == sorted(f"{tag} {i}" for tag in ("first", "second") for i in range(25))
    store.close()


def test_stand_in_server_runs_as_a_process(tmp_path):
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "tests" / "surreal_ws_server.py"), "--url", f"surrealkv://{tmp_path / 'db'}"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    try:
        ready = server.stdout.readline().split()
        assert ready[0] == "ready" and ready[1].startswith("ws://127.0.0.1:")

        async def use(url):
            store = Store(url)
            session, _ = await store.start_run(KEY, "helper")
            seq = await store.append_message(session["id"], "user", "persisted by the stand-in")
            await store.aclose()
            return seq

        assert asyncio.run(use(ready[1])) == 1
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_a_dropped_server_connection_is_an_error_then_the_next_call_reconnects(tmp_path):
    data = f"surrealkv://{tmp_path / 'db'}"
    server = ServerThread(data)
    store = Store(server.url)
    session, _ = store.sync.start_run(KEY, "helper")
    port = server.server.port
    server.stop()
    with pytest.raises(StoreError, match="lost the connection to the session store"):
        store.sync.append_message(session["id"], "user", "while the server is down")
    server = ServerThread(data, port=port)
    try:
        assert store.sync.append_message(session["id"], "user", "after the restart") == 1
    finally:
        store.close()
        server.stop()


@pytest.mark.asyncio
async def test_write_conflicts_between_server_clients_are_retried():
    server = ServerThread("mem://", one_at_a_time=False)
    a, b = Store(server.url), Store(server.url)
    try:
        _, run = await a_run(a, KEY, running=True)
        # Every call rewrites the same run and session records, so overlapping transactions conflict.
        await asyncio.gather(*(
            (a if i % 2 else b).update_run(run["id"], usage={"input_tokens": i, "output_tokens": 0})
            for i in range(40)
        ))
        assert (await b.get_run(run["id"]))["status"] == "running"
    finally:
        await a.aclose()
        await b.aclose()
        server.stop()


STARTER = """
import asyncio, sys
from agents.store import DuplicateRun, Store

async def main(url, key):
    store = Store(url)

    async def start(i):
        try:
            return (await store.start_run(key, "helper", idempotency_key=f"k{i % 4}"))[1]["id"]
        except DuplicateRun as dup:
            return "dup:" + dup.run["id"]

    print(" ".join(await asyncio.gather(*(start(i) for i in range(12)))))
    await store.aclose()

asyncio.run(main(*sys.argv[1:]))
"""


def test_start_runs_from_two_processes_through_a_server_record_one_run_per_idempotency_key(surreal_ws_url):
    procs = [
        subprocess.Popen([sys.executable, "-c", STARTER, surreal_ws_url, KEY], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    answers = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        answers += out.split()
    started = [a for a in answers if not a.startswith("dup:")]
    assert len(started) == 4, answers
    assert {a.removeprefix("dup:") for a in answers} == set(started), "every duplicate names a run that was started"
    store = Store(surreal_ws_url)
    session = store.sync.current_session(KEY)
    assert sorted(r["id"] for r in store.sync.runs(session["id"])) == sorted(started)
    with pytest.raises(DuplicateRun):
        store.sync.start_run(KEY, "helper", idempotency_key="k0")
    store.close()
