"""The native call pool under the host: bounded, ends queued calls at shutdown, never keeps the process
from exiting, serves several event loops, and says plainly when it has not been built."""

import asyncio
import os
import subprocess
import sys

import pytest

from extism.extism import CompiledPlugin

from sandbox import native
from sandbox.errors import SandboxError
from sandbox.host import Host
from sandbox.manifest import Grant, build_manifest
from tests.sandbox_fixtures import ROOT, spec, wasm_path


def copy_of(name: str, grant: Grant) -> native.Copy:
    wasm = wasm_path(name).read_bytes()
    return native.Copy(CompiledPlugin(build_manifest(wasm, spec(name).sha256, grant), False, []))


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.asyncio
async def test_no_more_than_max_workers_calls_run_at_once():
    two = Host(max_workers=2)
    grant = Grant(timeout_ms=20_000, max_concurrency=3)
    started = [asyncio.Event() for _ in range(3)]
    two_started = asyncio.Event()

    def on_start_of(i):
        def on_start():
            started[i].set()
            if sum(event.is_set() for event in started) >= 2:
                two_started.set()
        return on_start

    cancels = [asyncio.Event() for _ in range(3)]
    calls = [asyncio.create_task(two.call(spec("loop"), "spin", b"", grant, cancel=cancels[i], on_start=on_start_of(i)))
             for i in range(3)]
    try:
        # The calls reach the pool in the order their compiles finish: any two run first.
        await asyncio.wait_for(two_started.wait(), 5)
        running = [i for i in range(3) if started[i].is_set()]
        assert len(running) == 2, "a third call started while both workers were in 20 s loops"
        waiting = ({0, 1, 2} - set(running)).pop()
        cancels[running[0]].set()
        await asyncio.wait_for(started[waiting].wait(), 5)
    finally:
        for cancel in cancels:
            cancel.set()
        results = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
        two.shutdown()
    assert [r.kind for r in results] == ["cancelled"] * 3


@pytest.mark.asyncio
async def test_a_burst_gets_a_thread_per_call_up_to_the_bound():
    # One idle thread and four calls at once: the idle one counts for one call only, so two more
    # threads start (three at most) and the fourth call waits.
    workers, loop = native.Workers(3), asyncio.get_running_loop()
    waker = native.Waker(loop)
    try:
        warm_ended = asyncio.Event()
        waker.start(workers, waker.job(copy_of("echo", Grant()), "echo", b"x", b"", 1024), lambda job: warm_ended.set())
        await asyncio.wait_for(warm_ended.wait(), 5)
        assert workers.threads() == 1
        grant = Grant(timeout_ms=2_000)
        jobs = [waker.job(copy_of("loop", grant), "spin", b"", b"", 1024, notify_start=True) for _ in range(4)]
        started, ended = [asyncio.Event() for _ in jobs], [asyncio.Event() for _ in jobs]
        for job, start, end in zip(jobs, started, ended):
            waker.start(workers, job, lambda job, end=end: end.set(), start.set)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started[:3])), 5)
        assert workers.threads() == 3 and jobs[3].state() == native.QUEUED
        for job in jobs[:3]:
            job.cancel(20.0)
        await asyncio.wait_for(started[3].wait(), 5)
        jobs[3].cancel(20.0)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in ended)), 5)
        assert workers.threads() == 3
    finally:
        workers.shutdown()
        waker.release()


@pytest.mark.asyncio
async def test_a_call_let_go_with_its_loop_is_freed_when_it_ends():
    baseline = open_fds()
    workers, loop = native.Workers(1), asyncio.get_running_loop()
    waker = native.Waker(loop)
    started, ended = asyncio.Event(), []
    job = waker.job(copy_of("loop", Grant(timeout_ms=300)), "spin", b"", b"", 1024, notify_start=True)
    waker.start(workers, job, ended.append, started.set)
    await asyncio.wait_for(started.wait(), 5)
    loop.remove_reader(waker._fd)
    waker.release()  # what Host does for a loop closed with this call pending
    # The call ends at its 300 ms timeout; the worker then frees it, and the eventfd it held closes.
    deadline = loop.time() + 10
    while open_fds() > baseline and loop.time() < deadline:
        await asyncio.sleep(0.05)
    assert open_fds() == baseline and ended == []
    workers.shutdown()


@pytest.mark.asyncio
async def test_a_call_made_after_shutdown_ends_as_cancelled():
    host = Host(max_workers=1)
    assert (await host.call(spec("echo"), "echo", b"before", Grant())).output == b"before"
    host.shutdown()
    with pytest.raises(SandboxError) as caught:
        await asyncio.wait_for(host.call(spec("echo"), "echo", b"after", Grant()), 5)
    assert caught.value.kind == "cancelled" and "shut down" in caught.value.message


def test_one_host_serves_event_loops_in_turn():
    host = Host(max_workers=2)

    async def echo(text: bytes) -> bytes:
        return (await host.call(spec("echo"), "echo", text, Grant())).output

    try:
        assert [asyncio.run(echo(t)) for t in (b"first loop", b"second loop", b"third loop")] == [
            b"first loop", b"second loop", b"third loop"]
    finally:
        host.shutdown()


EXIT_WHILE_A_CALL_RUNS = """
import asyncio
from sandbox.host import Host
from sandbox.manifest import Grant
from tests.sandbox_fixtures import spec, started_event

async def start_and_leave():
    started, on_start = started_event()
    asyncio.ensure_future(Host().call(spec("loop"), "spin", b"", Grant(timeout_ms=600_000), on_start=on_start))
    await asyncio.wait_for(started.wait(), 10)

# The loop is left open with the call still running: exiting must stop it before Extism tears down.
asyncio.new_event_loop().run_until_complete(start_and_leave())
print("started", flush=True)
"""


def test_the_process_exits_cleanly_while_a_call_still_runs():
    # Exiting right as the call starts is when Extism loses a cancel; a lost one would crash the exit.
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", EXIT_WHILE_A_CALL_RUNS], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == "started", done.stderr


def test_an_unbuilt_library_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "LIBRARY", tmp_path / "missing.so")
    with pytest.raises(native.NotBuilt, match="make install"):
        native._lib.__wrapped__()


def test_a_library_older_than_its_source_is_a_clear_error(monkeypatch, tmp_path):
    old = tmp_path / "old.so"
    old.write_bytes(native.LIBRARY.read_bytes())
    newer = tmp_path / "calls.c"
    newer.write_text("/* edited */\n")
    stamp = native.SOURCE.stat().st_mtime
    os.utime(old, (stamp, stamp))
    os.utime(newer, (stamp + 60, stamp + 60))
    monkeypatch.setattr(native, "LIBRARY", old)
    monkeypatch.setattr(native, "SOURCE", newer)
    with pytest.raises(native.NotBuilt, match="older than"):
        native._lib.__wrapped__()
