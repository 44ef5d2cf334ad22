"""The host's worker pool: bounded, abandons queued jobs on shutdown, never keeps the process from exiting."""

import logging
import subprocess
import sys
import threading

import pytest

from sandbox.workers import DaemonPool
from tests.sandbox_fixtures import ROOT


def _never():
    raise AssertionError("abandon() must not run for a job that started")


def test_jobs_run_on_worker_threads_and_a_failing_job_is_logged(caplog):
    pool = DaemonPool(2, "test")
    ran, failed_and_logged = threading.Event(), threading.Event()
    seen = []

    def job():
        seen.append(threading.current_thread().name)
        ran.set()

    pool.start(job, _never)
    assert ran.wait(5) and seen[0].startswith("test_") and seen[0] != threading.current_thread().name

    class Mark(logging.Handler):
        def emit(self, record):
            if record.exc_info and isinstance(record.exc_info[1], ZeroDivisionError):
                failed_and_logged.set()

    handler = Mark()
    logging.getLogger("sandbox.workers").addHandler(handler)
    try:
        pool.start(lambda: 1 / 0, _never)
        assert failed_and_logged.wait(5)
        # The worker survived the failure and takes the next job.
        ran.clear()
        pool.start(job, _never)
        assert ran.wait(5)
    finally:
        logging.getLogger("sandbox.workers").removeHandler(handler)
        pool.shutdown()


def test_no_more_than_max_workers_jobs_run_at_once():
    pool = DaemonPool(2, "test")
    release, lock, running, peak, finished = threading.Event(), threading.Lock(), [0], [0], threading.Semaphore(0)
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
        finished.release()

    for _ in range(5):
        pool.start(work, _never)
    assert two_running.wait(5)
    with lock:
        assert running[0] == 2
    release.set()
    for _ in range(5):
        assert finished.acquire(timeout=5)
    assert peak[0] == 2
    pool.shutdown()


def test_shutdown_abandons_jobs_that_have_not_started():
    pool = DaemonPool(1, "test")
    release, started, busy_done = threading.Event(), threading.Event(), threading.Event()
    abandoned = []

    def busy():
        started.set()
        release.wait(5)
        busy_done.set()

    pool.start(busy, _never)
    assert started.wait(5)
    pool.start(lambda: abandoned.append("ran"), lambda: abandoned.append("abandoned"))
    pool.shutdown()
    assert abandoned == ["abandoned"]
    release.set()
    assert busy_done.wait(5)
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.start(lambda: None, _never)


EXIT_WHILE_A_CALL_RUNS = """
import threading
from sandbox.workers import DaemonPool

started = threading.Event()
DaemonPool(2, "test").start(lambda: (started.set(), threading.Event().wait()), lambda: None)
started.wait(10)
print("started", flush=True)
"""


def test_the_process_exits_while_a_call_never_returns():
    # Stands in for a plug-in call Extism failed to stop: the process must still be able to exit.
    done = subprocess.run([sys.executable, "-c", EXIT_WHILE_A_CALL_RUNS], cwd=ROOT, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0 and done.stdout.strip() == "started", done.stderr
