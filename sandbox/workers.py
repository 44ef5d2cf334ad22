"""A bounded pool of daemon threads for plug-in calls.

`concurrent.futures.ThreadPoolExecutor` joins its workers when the interpreter exits. A plug-in call
that Extism failed to stop (a lost cancel, see `sandbox.host._Ticket`) never returns, so with it the
process could never exit: `serve` would hang on shutdown and a test run would never finish. These
workers are daemon threads, so such a call is abandoned when the process exits.
"""

import queue
import threading
from concurrent.futures import Future

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

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future: Future = Future()
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot submit after shutdown")
            self._queue.put((future, fn, args, kwargs))
            # Start a worker only when none is idle, as ThreadPoolExecutor does.
            if not self._idle.acquire(blocking=False) and len(self._threads) < self._max_workers:
                thread = threading.Thread(target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True)
                self._threads.append(thread)
                thread.start()
        return future

    def _work(self):
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            future, fn, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(fn(*args, **kwargs))
                except BaseException as exc:
                    future.set_exception(exc)
            del item, future, fn, args, kwargs
            self._idle.release()

    def shutdown(self):
        """Cancel the calls not started yet and let the workers end; running calls finish on their own."""
        with self._lock:
            self._shutdown = True
            while True:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                item[0].cancel()
            for _ in self._threads:
                self._queue.put(_STOP)
