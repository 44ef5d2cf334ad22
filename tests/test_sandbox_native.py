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


def eventfds() -> int:
    """Open eventfds: one per event loop a host wakes, while it or a call started from it lives."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:[eventfd]"
        except OSError:
            pass  # the fd listdir itself used, now closed
    return count


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
    grant = Grant(timeout_ms=2_000)
    copies = [copy_of("echo", Grant())] + [copy_of("loop", grant) for _ in range(4)]
    results = []

    def ended(event):
        def on_end(job):
            results.append(job.result())
            event.set()
        return on_end

    try:
        warm_ended = asyncio.Event()
        waker.start(workers, waker.job(copies[0], "echo", b"x", b"", 1024), ended(warm_ended))
        await asyncio.wait_for(warm_ended.wait(), 5)
        assert workers.threads() == 1
        jobs = [waker.job(copy, "spin", b"", b"", 1024, notify_start=True) for copy in copies[1:]]
        started, done = [asyncio.Event() for _ in jobs], [asyncio.Event() for _ in jobs]
        for job, start, end in zip(jobs, started, done):
            waker.start(workers, job, ended(end), start.set)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in started[:3])), 5)
        assert workers.threads() == 3 and jobs[3].state() == native.QUEUED
        for job in jobs[:3]:
            job.cancel(native.SAFE_CANCEL_DELAY_MS)
        await asyncio.wait_for(started[3].wait(), 5)
        jobs[3].cancel(native.SAFE_CANCEL_DELAY_MS)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in done)), 5)
        assert workers.threads() == 3
        assert [r.stage for r in results] == [native.OK] + [native.CALL_FAILED] * 4
    finally:
        workers.shutdown()
        waker.release()
        for copy in copies:
            copy.release()


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


LOOP_CLOSED_WITH_A_CALL_RUNNING = """
import asyncio
from sandbox.host import Host
from sandbox.manifest import Grant
from tests.sandbox_fixtures import spec
from tests.test_sandbox_native import eventfds

host = Host(max_workers=2)
baseline = eventfds()
closed = asyncio.new_event_loop()

async def start_a_call():
    started = asyncio.Event()
    task = asyncio.ensure_future(host.call(spec("loop"), "spin", b"", Grant(timeout_ms=300), on_start=started.set))
    task._log_destroy_pending = False  # it stays pending for good, as intended here
    await asyncio.wait_for(started.wait(), 5)

closed.run_until_complete(start_a_call())
closed.close()  # with the call still running: its outcome keeps this loop alive

async def echo_then_wait_for_the_eventfds():
    assert (await host.call(spec("echo"), "echo", b"next loop", Grant())).output == b"next loop"
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while eventfds() > baseline + 1 and loop.time() < deadline:  # + this loop's own
        await asyncio.sleep(0.05)
    return eventfds() - baseline

print(asyncio.run(echo_then_wait_for_the_eventfds()), flush=True)
"""


def test_a_loop_closed_with_a_call_running_lets_the_call_go_once_another_loop_comes():
    # In a process of its own, so that no other test's loops open or close eventfds meanwhile.
    # The first loop's call ends at its 300 ms timeout; let go, it frees itself and its eventfd closes,
    # leaving only the second loop's.
    done = subprocess.run([sys.executable, "-c", LOOP_CLOSED_WITH_A_CALL_RUNNING], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "1", (done.stdout, done.stderr)


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


EXIT_WHILE_A_BLOCKING_CALL_RUNS = """
import threading
from sandbox.host import Host
from sandbox.manifest import Grant
from tests.sandbox_fixtures import spec

host = Host()
host.compile_ms(spec("loop"), Grant(timeout_ms=600_000))
threading.Thread(target=host.run, args=(spec("loop"), "spin", b"", Grant(timeout_ms=600_000)), daemon=True).start()
# Exits as soon as the thread is in Extism (or about to be): the exit hook stops it either way.
print("started", flush=True)
"""


def test_the_process_exits_cleanly_while_a_blocking_call_runs_on_a_thread():
    for _ in range(3):
        done = subprocess.run([sys.executable, "-c", EXIT_WHILE_A_BLOCKING_CALL_RUNS], cwd=ROOT, capture_output=True,
                              text=True, timeout=30)
        assert done.returncode == 0 and done.stdout.strip() == "started", done.stderr


def test_a_blocking_call_after_shutdown_ends_as_cancelled():
    host = Host(max_workers=1)
    assert host.run(spec("echo"), "echo", b"before", Grant()).output == b"before"
    host.shutdown()
    with pytest.raises(SandboxError) as caught:
        host.run(spec("echo"), "echo", b"after", Grant())
    assert caught.value.kind == "cancelled" and "shut down" in caught.value.message


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
