"""Plug-in calls on a bounded pool of Python daemon threads, and what it takes to stop them.

The host (sandbox/host.py) decides everything about a call (which compiled copy, its grant, what its
errors mean); this module only decides where and when a call runs:

- at most `max_workers` threads, started as calls arrive; a call cancelled while it waits for one is
  dropped when a thread reaches it, without running;
- fair between plug-ins (a call's `owner`): a waiting call whose plug-in has no call running is taken
  before the calls of plug-ins that have, and when every thread is busy it gets a thread of its own
  beyond `max_workers` (which ends once it is idle). So one plug-in's slow calls, however many its
  grant lets run at once, never keep another plug-in's call from starting; the extra threads are
  bounded by the number of plug-ins with calls at the same moment;
- never two calls at once on one compiled copy: Extism stops a call (timeout or cancel) by bumping
  its compiled plug-in's engine epoch, which would interrupt every call running from it. A call whose
  copy is still being tidied by the thread that ran its last call is handed to that thread, which
  runs it straight after, so back-to-back calls wake no other thread;
- blocking calls (`Workers.run`) run on their caller's thread but count as the pool's calls: refused
  after shutdown and stopped at exit like the others.

The threads are daemon threads: a call Extism failed to stop never returns, and a joined thread
(as `concurrent.futures` joins its own) would then keep the process from ever exiting. But a process
should not exit while a call is inside Extism either: Extism's exit handler crashed processes that did
(SIGSEGV every time in the tests of the pool this module replaced, commit 383de16; not seen with these
threads, but nothing in Extism makes it safe). So at exit, before Extism's handler, every running
call is cancelled and waited for (`_stop_at_exit`).

The cffi calls into Extism release the GIL, so calls on several threads run in parallel.
"""

import atexit
import logging
import threading
import time
import weakref
from collections import deque
from contextlib import contextmanager
from typing import Protocol

log = logging.getLogger(__name__)

# Extism loses a cancel that lands while a call is still starting, and that call then ignores its
# timeout too (measured: about 1 in 100 immediate cancels); so a cancel reaches a call only once it
# has run this long, and is repeated until then.
SAFE_CANCEL_DELAY_S = 0.02
# How often a cancel is repeated until the call notices.
CANCEL_RETRY_S = 0.01
# How long exiting waits for running calls to stop once cancelled.
_EXIT_WAIT_S = 2.0


class Ticket:
    """Connects a call to whoever may cancel it, through its running instance (`extism.Plugin`)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._plugin = None
        self._started_at = 0.0
        self.taken = False
        self.ran = False
        self.cancelled = False

    def take(self) -> bool:
        """A thread takes the call: False if it was cancelled while it waited."""
        with self._lock:
            self.taken = not self.cancelled
            return self.taken

    def attach(self, plugin) -> bool:
        """The plug-in is about to run in this instance: False if the call was cancelled first."""
        with self._lock:
            self.ran = not self.cancelled
            if self.ran:
                self._plugin = plugin
                self._started_at = time.monotonic()
            return self.ran

    def detach(self):
        """The call has returned; its instance may be freed from now on (its cancel handle with it)."""
        with self._lock:
            self._plugin = None

    def cancel(self) -> bool:
        """Cancel the call (see SAFE_CANCEL_DELAY_S; the caller repeats this until the call ends);
        False if no thread had taken it, so none ever will run it."""
        with self._lock:
            self.cancelled = True
            if self._plugin is not None and time.monotonic() - self._started_at >= SAFE_CANCEL_DELAY_S:
                self._plugin.cancel_handle().cancel()
            return self.taken


class Job(Protocol):
    """What the pool runs: `run()` calls the plug-in, answers, then tidies; `skip(reason)` answers a
    call that will not run. `copy` is the compiled plug-in it runs on (one call at a time)."""

    copy: object
    ticket: Ticket
    owner: str

    def run(self) -> None: ...

    def skip(self, reason: str) -> None: ...


SHUT_DOWN = "the sandbox host shut down"
CANCELLED_BEFORE_START = "the call was cancelled before it started"
NO_WORKER = "the sandbox host could not start a worker thread"

# Every pool not yet collected, for the exit hook. An idle pool's threads keep it alive until its
# host shuts it down (or is collected: Host's finalizer).
_pools: "weakref.WeakSet[Workers]" = weakref.WeakSet()


class Workers:
    def __init__(self, max_workers: int):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        self._max_threads = max_workers
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)  # a call was queued, or the pool shut down
        self._freed = threading.Condition(self._lock)  # a copy was let go, or a call was served
        self._queue: deque[Job] = deque()
        self._threads = 0
        self._idle = 0
        # Copies in use → the call handed to the thread holding the copy (None: none yet).
        self._busy: dict[object, Job | None] = {}
        # Tickets of the calls being served, from taken until tidied (for the exit stop).
        self._serving: set[Ticket] = set()
        # Calls taken by a thread and not yet done, per owner (plug-in).
        self._running: dict[str, int] = {}
        self._shut_down = False
        _pools.add(self)

    @property
    def shut_down(self) -> bool:
        return self._shut_down

    def submit(self, job: Job):
        """Queue the call (or hand it to the thread tidying its copy). One that cannot run (after
        shutdown, or no thread could be started) is skipped at once."""
        with self._lock:
            if job.copy in self._busy and self._busy[job.copy] is None:
                self._busy[job.copy] = job
                return
            reason = self._enqueue(job)
        if reason:
            job.skip(reason)

    def _enqueue(self, job: Job) -> str | None:
        """Queue `job`, starting a thread if needed; the reason it cannot run, if so. Called with the lock held."""
        if self._shut_down:
            return SHUT_DOWN
        self._queue.append(job)
        if self._idle:
            self._work.notify()
        # A woken thread counts as idle until it has taken its call, so `idle` alone would let a
        # burst of calls wait for one thread: start one for each call the idle ones do not cover.
        # A plug-in with nothing running or waiting gets its thread even when the pool is full.
        if len(self._queue) > self._idle and (self._threads < self._max_threads or self._first_of_its_owner(job)):
            try:
                threading.Thread(target=self._work_loop, name=f"sandbox-worker-{self._threads}", daemon=True).start()
            except RuntimeError:
                if self._threads == 0:  # nothing would ever take it; each call queued like this was taken back
                    self._queue.clear()
                    return NO_WORKER
            else:
                self._threads += 1
        return None

    def _first_of_its_owner(self, job: Job) -> bool:
        """Whether `job` (just queued) is its owner's only call, running or waiting. Called with the lock held."""
        return not self._running.get(job.owner) and sum(j.owner == job.owner for j in self._queue) == 1

    def _pick(self) -> Job | None:
        """The next call to take: the first whose owner has no call running, else the oldest; None if
        this thread is one too many and no such call waits. Called with the lock held."""
        for i, job in enumerate(self._queue):
            if not self._running.get(job.owner):
                del self._queue[i]
                return job
        if self._threads > self._max_threads:
            return None
        return self._queue.popleft()

    def _count(self, job: Job, step: int):
        """Count a call as taken (+1) or done (-1) for its owner. Called with the lock held."""
        left = self._running.get(job.owner, 0) + step
        if left:
            self._running[job.owner] = left
        else:
            self._running.pop(job.owner, None)

    def run(self, job: Job):
        """Run the call on this thread, as one of the pool's calls: refused after shutdown, stopped at exit."""
        self._serve(job, hand_off=False)

    def _work_loop(self):
        while True:
            with self._lock:
                self._idle += 1
                while not self._queue and not self._shut_down and self._threads <= self._max_threads:
                    self._work.wait()
                self._idle -= 1
                job = self._pick() if self._queue else None
                if job is None:
                    self._threads -= 1
                    if self._queue:  # calls this thread left for the others: make sure one is awake
                        self._work.notify()
                    return
                self._count(job, +1)
            self._serve(job, hand_off=True)
            del job  # an idle thread keeps nothing alive

    def _serve(self, job: Job, *, hand_off: bool):
        """Run `job` (counted as taken if handed off), then each call handed to this thread meanwhile
        (if `hand_off`)."""
        with self._lock:
            if not hand_off:
                self._count(job, +1)
            self._acquire(job.copy)
        while job is not None:
            try:
                refusal = self._enter(job)
                if refusal:
                    job.skip(refusal)
                else:
                    job.run()
            except Exception:
                log.exception("a sandbox call failed in its worker")
            finally:
                job = self._done(job, hand_off)

    def _acquire(self, copy):
        """Hold the copy. It may still be tidied by the thread that ran its last call (a call is handed
        to that thread only when submitted, not when run on its caller's thread). Called with the lock held."""
        while copy in self._busy:
            self._freed.wait()
        self._busy[copy] = None

    def _enter(self, job: Job) -> str | None:
        """Take the call for this thread; the reason it must not run, if so."""
        with self._lock:
            if self._shut_down:
                return SHUT_DOWN
            if not job.ticket.take():
                return CANCELLED_BEFORE_START
            self._serving.add(job.ticket)
            return None

    def _done(self, job: Job, hand_off: bool) -> Job | None:
        """The call has ended: let go of its copy. Returns the call handed over meanwhile, which this
        thread runs next, still holding the copy; a blocking caller's thread queues it instead."""
        with self._lock:
            self._serving.discard(job.ticket)
            self._count(job, -1)
            waiting = self._release(job.copy)
            if waiting is None or hand_off:
                if waiting is not None:
                    self._busy[waiting.copy] = None
                    self._count(waiting, +1)
                return waiting
        self._requeue(waiting)
        return None

    def _release(self, copy) -> Job | None:
        """Let go of the copy; the call handed over meanwhile, if any. Called with the lock held."""
        waiting = self._busy.pop(copy)
        self._freed.notify_all()
        return waiting

    def _requeue(self, job: Job):
        """Queue a call that was handed to a thread that will not run it."""
        with self._lock:
            refusal = self._enqueue(job)
        if refusal:
            job.skip(refusal)

    @contextmanager
    def hold(self, copy):
        """`with workers.hold(copy):` use the copy outside a call; no call runs on it meanwhile."""
        with self._lock:
            self._acquire(copy)
        try:
            yield
        finally:
            with self._lock:
                waiting = self._release(copy)
            if waiting is not None:
                self._requeue(waiting)

    def shutdown(self):
        """Calls not taken yet are skipped; idle threads end; running calls finish on their own."""
        with self._lock:
            self._shut_down = True
            dropped = list(self._queue)
            self._queue.clear()
            self._work.notify_all()
        for job in dropped:
            job.skip(SHUT_DOWN)

    def stop(self, deadline: float) -> int:
        """Shut down, then cancel the running calls until they end or `deadline` (time.monotonic)
        passes; how many still run."""
        self.shutdown()
        with self._lock:
            while self._serving and time.monotonic() < deadline:
                for ticket in self._serving:
                    ticket.cancel()
                self._freed.wait(CANCEL_RETRY_S)
            return len(self._serving)


@atexit.register
def _stop_at_exit():
    # Python runs its exit hooks while daemon threads still run, and before the C library's exit
    # handlers, Extism's among them.
    deadline = time.monotonic() + _EXIT_WAIT_S
    left = sum(workers.stop(deadline) for workers in list(_pools))
    if left:
        log.error("%d plug-in call(s) still running at exit could not be stopped", left)
