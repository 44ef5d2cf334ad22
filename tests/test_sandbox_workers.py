"""The host's worker pool: bounded, and never keeps the process from exiting."""

import subprocess
import sys
import threading

import pytest

from sandbox.workers import DaemonPool
from tests.sandbox_fixtures import ROOT


def test_results_and_exceptions_come_back_through_the_futures():
    pool = DaemonPool(2, "test")
    assert pool.submit(lambda a, b=0: a + b, 2, b=3).result(timeout=5) == 5
    with pytest.raises(ZeroDivisionError):
        pool.submit(lambda: 1 / 0).result(timeout=5)
    pool.shutdown()


def test_no_more_than_max_workers_calls_run_at_once():
    pool = DaemonPool(2, "test")
    release, lock, running, peak = threading.Event(), threading.Lock(), [0], [0]
    two_running = threading.Event()

    def work():
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
            if running[0] == 2:
                two_running.set()
        release.wait(5)
        with lock:
            running[0] -= 1

    futures = [pool.submit(work) for _ in range(5)]
    assert two_running.wait(5)
    assert sum(f.running() for f in futures) == 2 and not any(f.done() for f in futures)
    release.set()
    for f in futures:
        f.result(timeout=5)
    assert peak[0] == 2
    pool.shutdown()


def test_shutdown_cancels_calls_that_have_not_started():
    pool = DaemonPool(1, "test")
    release = threading.Event()
    busy = pool.submit(release.wait, 5)
    waiting = pool.submit(lambda: "never")
    pool.shutdown()
    assert waiting.cancelled()
    release.set()
    assert busy.result(timeout=5) is True
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(lambda: None)


EXIT_WHILE_A_CALL_RUNS = """
import threading
from sandbox.workers import DaemonPool

started = threading.Event()
DaemonPool(2, "test").submit(lambda: (started.set(), threading.Event().wait()))
started.wait(10)
print("started", flush=True)
"""


def test_the_process_exits_while_a_call_never_returns():
    # Stands in for a plug-in call Extism failed to stop: the process must still be able to exit.
    done = subprocess.run([sys.executable, "-c", EXIT_WHILE_A_CALL_RUNS], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "started", done.stderr
