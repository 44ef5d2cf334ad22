"""Python's side of `calls.c`: Extism calls run on native threads that never hold the GIL.

The host (sandbox/host.py) decides everything: which compiled copy a call uses, its grant and config,
what its errors mean. This module only moves a call to a native worker and back: `Job` is one call,
`Copy` one compiled plug-in (with the instance made ahead for its next call), `Workers` the bounded
thread pool, and `Waker` the eventfd that wakes an event loop when one of its calls ends.
"""

import atexit
import functools
import logging
import os
import weakref
from pathlib import Path

import cffi
import extism_sys

SOURCE = Path(__file__).with_name("calls.c")
HEADER = Path(__file__).with_name("calls.h")
LIBRARY = Path(__file__).with_name("libexoclaw_calls.so")
# Extism loses a cancel that lands while a call is still starting, and that call then ignores its
# timeout too (measured: about 1 in 100 immediate cancels); so a cancel reaches a call only once it
# has run this long, and is repeated until then.
SAFE_CANCEL_DELAY_MS = 20.0
# How long exiting waits for running calls to stop once cancelled.
_EXIT_WAIT_MS = 2000.0
log = logging.getLogger(__name__)

ffi = cffi.FFI()
ffi.cdef("\n".join(line for line in HEADER.read_text().splitlines() if not line.startswith("#")))
_STATES, _STAGES = ffi.typeof("enum xc_state").relements, ffi.typeof("enum xc_stage").relements
QUEUED, TAKEN, RUNNING, DONE, SKIPPED = (_STATES[f"XC_{state}"] for state in (
    "QUEUED", "TAKEN", "RUNNING", "DONE", "SKIPPED"))
OK, INSTANTIATE_FAILED, NOT_FOUND, CALL_FAILED, CANCELLED_BEFORE_START, SHUT_DOWN, NO_WORKER = (
    _STAGES[f"XC_{stage}"] for stage in (
        "OK", "INSTANTIATE_FAILED", "NOT_FOUND", "CALL_FAILED", "CANCELLED_BEFORE_START", "SHUT_DOWN", "NO_WORKER"))


class NotBuilt(RuntimeError):
    pass


@functools.cache
def _lib():
    if not LIBRARY.exists() or LIBRARY.stat().st_mtime < max(SOURCE.stat().st_mtime, HEADER.stat().st_mtime):
        raise NotBuilt(f"the sandbox's native call pool ({LIBRARY.name}) is missing or older than {SOURCE.name}: "
                       "run `make install` (or `python -m sandbox.native.build`)")
    lib = ffi.dlopen(str(LIBRARY))
    extism = Path(extism_sys.__file__).with_name("libextism_sys.so")
    if lib.xc_load(str(extism).encode()) != 0:
        raise NotBuilt(f"cannot find Extism's functions in {extism}")
    return lib


def _take_string(pointer) -> str:
    text = ffi.string(pointer).decode(errors="replace")
    _lib().xc_free(pointer)
    return text


class Copy:
    """One compiled plug-in, owned here from now on (its `CompiledPlugin` no longer frees it)."""

    def __init__(self, compiled):
        self._copy = _lib().xc_copy_new(ffi.cast("void *", int(extism_sys.ffi.cast("uintptr_t", compiled.pointer))))
        if self._copy == ffi.NULL:
            raise MemoryError("cannot allocate a compiled copy")
        compiled.pointer = None

    def exports(self, names: list[str]) -> tuple[set[str], str | None]:
        """Which of `names` the plug-in exports, or the error that kept it from instantiating."""
        found: set[str] = set()
        for start in range(0, len(names), 64):
            chunk = names[start:start + 64]
            error = ffi.new("char **")
            mask = _lib().xc_copy_exports(self._copy, b"".join(n.encode() + b"\0" for n in chunk) + b"\0", error)
            if error[0] != ffi.NULL:
                return set(), _take_string(error[0])
            found.update(name for i, name in enumerate(chunk) if mask >> i & 1)
        return found, None

    def release(self):
        """Freed at once, or by the worker still tidying it."""
        if self._copy is not None:
            _lib().xc_copy_release(self._copy)
            self._copy = None


class Result:
    """What a job ended with, copied out of native memory."""

    def __init__(self, raw):
        self.stage = raw.stage
        self.ran = bool(raw.ran)
        self.used_spare = bool(raw.used_spare)
        self.output_too_large = bool(raw.output_too_large)
        self.instantiate_ms = raw.instantiate_ms
        self.call_ms = raw.call_ms
        self.output_length = raw.output_length
        self.output = ffi.unpack(ffi.cast("char *", raw.output), raw.output_length) if raw.output != ffi.NULL else b""
        self.error = ffi.string(raw.error).decode(errors="replace") if raw.error != ffi.NULL else ""
        self.plugin_id = bytes(ffi.unpack(ffi.cast("char *", raw.plugin_id), 16)) if self.stage == CALL_FAILED else b""


class Job:
    """One call: `function(data)` on `copy`, in its instance made ahead when that was made with this
    `config` (JSON bytes), else in a new one. With `prepare_next` the worker makes the copy's next
    instance once the caller has its answer. The native job lives until it has ended and `result()`
    was read."""

    def __init__(self, copy: Copy, function: str, data: bytes, config: bytes, max_output: int, *,
                 prepare_next: bool = False, notifier=None, notify_start: bool = False):
        self.cancel_requested = False
        self._copy = copy
        self._job = _lib().xc_job_new(copy._copy, function.encode(), data, len(data), config, len(config), max_output,
                                      prepare_next, notifier or ffi.NULL, notify_start)
        if self._job == ffi.NULL:
            raise MemoryError("cannot allocate a plug-in call")

    def _native(self):
        if self._job is None:
            raise RuntimeError("the call's result was read or the call was let go")
        return self._job

    def state(self) -> int:
        return _lib().xc_job_state(self._native())

    def cancel(self, settle_ms: float) -> bool:
        """Cancel the call; False if no worker had taken it, so it will never run."""
        self.cancel_requested = True
        return self._job is None or bool(_lib().xc_job_cancel(self._job, settle_ms))

    def ran(self) -> bool:
        """Whether the plug-in started running (the job has ended)."""
        return bool(_lib().xc_job_result(self._native()).ran)

    def run(self, workers: "Workers"):
        """Run the call on this thread (the GIL is released meanwhile), as one of `workers`' calls:
        refused after their shutdown, stopped at exit."""
        _lib().xc_job_run(workers._pool, self._native())

    def abandon(self):
        """Let go of the call without its result: it is dropped if no worker has taken it, and freed
        (and its copy released) when it ends."""
        _lib().xc_job_abandon(self._native())
        self._job = None
        self._copy._copy = None  # released by the native side

    def result(self) -> Result:
        """The ended job's result; frees the native job."""
        assert self.state() in (DONE, SKIPPED)
        try:
            return Result(_lib().xc_job_result(self._native()))
        finally:
            _lib().xc_job_free(self._job)
            self._job = None


class Workers:
    """At most `max_workers` native threads, started as calls arrive."""

    def __init__(self, max_workers: int):
        self._pool = _lib().xc_pool_new(max_workers)
        if self._pool == ffi.NULL:
            raise MemoryError("cannot allocate a worker pool")
        # Extism's own exit handlers crash a call still running then: at exit, running calls are
        # cancelled and waited for first (Python's exit handlers run before the C library's).
        atexit.register(_lib().xc_pool_stop, self._pool, _EXIT_WAIT_MS, SAFE_CANCEL_DELAY_MS)
        # Dropped without shutdown: its idle threads end.
        weakref.finalize(self, _lib().xc_pool_shutdown, self._pool)

    def threads(self) -> int:
        """Threads started and not yet ended."""
        return _lib().xc_pool_threads(self._pool)

    def submit(self, job: Job):
        """Queue the call; one that cannot run (after shutdown, or no thread) ends at once as SHUT_DOWN or NO_WORKER."""
        _lib().xc_pool_submit(self._pool, job._native())

    def shutdown(self):
        """Calls not taken yet end as SHUT_DOWN; idle threads end; running calls finish on their own."""
        _lib().xc_pool_shutdown(self._pool)


class Waker:
    """An eventfd one event loop reads: each job started through it wakes the loop when it ends (and
    when it starts running, if asked), and the loop then runs that job's callbacks."""

    def __init__(self, loop):
        self._notifier = _lib().xc_notifier_new()
        if self._notifier == ffi.NULL:
            raise OSError("cannot open an eventfd for plug-in calls")
        self._fd = _lib().xc_notifier_fd(self._notifier)
        self._jobs: dict[Job, tuple] = {}
        loop.add_reader(self._fd, self._wake)

    def job(self, *args, notify_start: bool = False, **kwargs) -> Job:
        return Job(*args, notifier=self._notifier, notify_start=notify_start, **kwargs)

    def start(self, workers: Workers, job: Job, on_end, on_start=None):
        """Queue `job`; the loop calls on_end(job) once it has ended and on_start() once it runs."""
        self._jobs[job] = (on_end, on_start)
        workers.submit(job)

    def _wake(self):
        try:
            os.read(self._fd, 4096)  # a byte per wake-up; any left over wake the loop again
        except BlockingIOError:
            pass
        for job, (on_end, on_start) in list(self._jobs.items()):
            state = job.state()
            if state in (DONE, SKIPPED):
                del self._jobs[job]
                try:
                    if on_start is not None and job.ran():
                        on_start()  # it ran and ended between two wake-ups
                except Exception:
                    log.exception("a plug-in call's on_start callback failed")
                finally:
                    on_end(job)
            elif state == RUNNING and on_start is not None:
                self._jobs[job] = (on_end, None)
                try:
                    on_start()
                except Exception:
                    log.exception("a plug-in call's on_start callback failed")

    def release(self):
        """The loop is gone or closed: its calls still pending are let go (each is freed, and its copy
        released, when it ends) and the eventfd closes once none holds it. Safe to call twice."""
        for job in self._jobs:
            job.abandon()
        self._jobs.clear()
        if self._notifier is not None:
            _lib().xc_notifier_release(self._notifier)
            self._notifier = None
