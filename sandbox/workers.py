"""A bounded pool of daemon threads for plug-in calls.

`concurrent.futures.ThreadPoolExecutor` joins its workers when the interpreter exits. A plug-in call
that Extism failed to stop (a lost cancel, see `sandbox.host._Ticket`) never returns, so with it the
process could never exit: `serve` would hang on shutdown and a test run would never finish. These
workers are daemon threads, so such a call is abandoned when the process exits.

Jobs report their own results (the host wakes its event loop directly), so a job can answer first
and tidy afterwards on the same worker while its caller goes on.
"""

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

_STOP = object()


class DaemonPool:
    def __init__(self, max_workers: int, name: str):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_workers = max_workers
        self._name = name
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = threading.Semaphore(0)
        self._shutdown = False

    def start(self, job: Callable[[], None], abandon: Callable[[], None]) -> None:
        """Run job() on a worker; if the pool shuts down before the job starts, abandon() runs instead."""
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot start a job after shutdown")
            self._queue.put((job, abandon))
            # Start a worker only when none is idle, as ThreadPoolExecutor does.
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()

    def _work(self):
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            try:
                item[0]()
            except BaseException:
                log.exception("a %s job failed", self._name)
            del item
            self._idle.release()

    def shutdown(self):
        """Abandon the jobs not started yet and let the workers end; running jobs finish on their own."""
        with self._lock:
            self._shutdown = True
            while True:
                try:
                    job, abandon = self._queue.get_nowait()
                except queue.Empty:
                    break
                abandon()
            for _ in self._threads:
                self._queue.put(_STOP)
