"""The Extism plug-in host: compiled plug-ins pooled per (wasm, grant), a fresh instance for every call.

`Host.run` is the blocking call (used by `runplugin` and discovery); `Host.call` is the async API: it
holds a per-plug-in concurrency limit, hands the call to a bounded pool of native worker threads
(sandbox/native), and stops the plug-in promptly (Extism's cancel handle) when the awaiting task is
cancelled or `cancel` is set.

The workers never hold the GIL, and each answers first and tidies after: it wakes the caller as soon
as the plug-in returns, then frees the used instance and, for plug-ins without granted paths, makes
the fresh instance for the copy's next call, so instantiating is off the caller's wait. Every call
still runs in an instance no call has used.
"""

import asyncio
import hashlib
import json
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from uuid import UUID

import extism
from extism.extism import CompiledPlugin

from . import native
from .errors import SandboxError, classify
from .extism_log import extism_log
from .manifest import Grant, build_manifest, instance_config

log = logging.getLogger(__name__)

# How often a cancel is repeated until the worker notices: Extism ignores a cancel sent before the call starts.
_CANCEL_RETRY_S = 0.01
# A cancelled call still running after this long cannot be stopped: it is abandoned (and logged).
_RUNAWAY_S = 3.0
# Compiled copies kept per (wasm, grant) for reuse; concurrent calls beyond this compile afresh.
_MAX_IDLE_COMPILED = 8
_REUSABLE_AFTER = {"plugin_error", "invalid_output", "not_found"}


@dataclass(frozen=True)
class PluginSpec:
    """What the host needs to know about a plug-in. An empty sha256 means unpinned (runplugin on a file)."""

    name: str
    sha256: str = ""
    wasi: bool = False
    config: Mapping = field(default_factory=dict)
    wasm_path: str = ""
    wasm: bytes | None = field(default=None, repr=False, compare=False)

    def load(self) -> bytes:
        if self.wasm is not None:
            return self.wasm
        try:
            return Path(self.wasm_path).read_bytes()
        except OSError as exc:
            raise SandboxError("not_found", f"{self.name}: cannot read {self.wasm_path}: {exc.strerror}") from None


@dataclass(frozen=True)
class CallOutput:
    """A call's output and timings. `instantiate_ms` is 0 when the instance was made ahead of the call."""

    output: bytes
    compile_ms: float
    instantiate_ms: float
    call_ms: float


@dataclass
class _Pool:
    """The verified wasm of one (sha256, WASI, grant) key and its compiled copies not in use (the
    most recently used last: its next instance is made or being made)."""

    key: tuple
    wasm: bytes = field(repr=False)
    idle: list[native.Copy] = field(default_factory=list)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _config_json(plugin_config: Mapping, grant: Grant, environ: Mapping[str, str]) -> bytes:
    config = instance_config(plugin_config, grant, environ)
    return json.dumps(config).encode() if config else b""


def _settle(outcome: asyncio.Future, result, error: BaseException | None):
    if not outcome.done():
        if error is None:
            outcome.set_result(result)
        else:
            outcome.set_exception(error)


def _retrieve(outcome: asyncio.Future):
    # The caller gave up on this outcome: read its error here so asyncio does not report it as lost.
    if not outcome.cancelled():
        outcome.exception()


def _release_idle(pools: OrderedDict, lock: threading.Lock):
    with lock:
        for pool in pools.values():
            for copy in pool.idle:
                copy.release()
            pool.idle.clear()
        pools.clear()


class Host:
    def __init__(self, max_workers: int = 16, cache_size: int = 64):
        self._workers = native.Workers(max_workers)
        self._pools: OrderedDict[tuple, _Pool] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._limits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._wakers: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # Compiled copies are native memory, not Python objects: a host dropped without shutdown frees them too.
        self._release = weakref.finalize(self, _release_idle, self._pools, self._lock)
        extism_log.install()

    def _idle_copy(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, native.Copy, float] | None:
        """An idle compiled copy of a pinned plug-in already cached, without loading or compiling."""
        if not spec.sha256:
            return None
        key = (spec.sha256, spec.wasi, grant.fingerprint)
        with self._lock:
            pool = self._pools.get(key)
            if pool is None or not pool.idle:
                return None
            self._pools.move_to_end(key)
            return pool, pool.idle.pop(), 0.0

    def _checkout(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, native.Copy, float]:
        """An idle compiled copy for this wasm and grant, compiling one if none is idle; and the compile time.

        Extism stops a call (timeout or cancel) by bumping its compiled plug-in's engine epoch, which
        interrupts every instance running from that engine; so no two calls run from the same copy.
        """
        if found := self._idle_copy(spec, grant):
            return found
        wasm = spec.load()
        actual = hashlib.sha256(wasm).hexdigest()
        if spec.sha256 and actual != spec.sha256:
            raise SandboxError(
                "hash_mismatch",
                f"{spec.name}: the .wasm's sha256 is {actual} but the plug-in is pinned to {spec.sha256}; "
                "refusing to load it (save the plug-in again in the admin if the new file is intended)",
            )
        key = (actual, spec.wasi, grant.fingerprint)
        with self._lock:
            pool = self._pools.setdefault(key, _Pool(key, wasm))
            self._pools.move_to_end(key)
            while len(self._pools) > self._cache_size:
                for copy in self._pools.popitem(last=False)[1].idle:
                    copy.release()
            if pool.idle:
                return pool, pool.idle.pop(), 0.0
        start = time.perf_counter()
        try:
            compiled = CompiledPlugin(build_manifest(pool.wasm, actual, grant), spec.wasi, [])
        except extism.Error as exc:
            error = classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)
            if error.kind == "hash_mismatch":
                raise error from None
            raise SandboxError("plugin_error", f"{spec.name}: cannot load the .wasm: {exc}") from None
        elapsed = _ms(start)
        return pool, native.Copy(compiled), elapsed

    async def _checkout_off_loop(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, native.Copy, float]:
        """_checkout in a thread (reading and compiling a plug-in can take long); a copy checked out
        for a caller that gave up meanwhile is checked back in."""
        future = asyncio.get_running_loop().run_in_executor(None, self._checkout, spec, grant)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            future.add_done_callback(self._checkin_unused)
            raise

    def _checkin_unused(self, checkout: asyncio.Future):
        if not checkout.cancelled() and checkout.exception() is None:
            pool, copy, _ = checkout.result()
            self._checkin(pool, copy)

    def _checkin(self, pool: _Pool, copy: native.Copy, *, keep: bool = True):
        """Return a copy to its pool, or free it (not to be kept, its pool evicted, or enough idle)."""
        with self._lock:
            if keep and self._pools.get(pool.key) is pool and len(pool.idle) < _MAX_IDLE_COMPILED:
                pool.idle.append(copy)
                return
        copy.release()

    def compile_ms(self, spec: PluginSpec, grant: Grant) -> float:
        """Make sure a compiled plug-in is ready; returns how long compiling took (0 when one was cached)."""
        pool, copy, elapsed = self._checkout(spec, grant)
        self._checkin(pool, copy)
        return elapsed

    def exports(self, spec: PluginSpec, grant: Grant, names: list[str]) -> set[str]:
        """Which of `names` the plug-in exports."""
        pool, copy, _ = self._checkout(spec, grant)
        try:
            found, error = copy.exports(names)
        finally:
            self._checkin(pool, copy)
        if error is not None:
            raise classify(error, [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)
        return found

    def run(
        self,
        spec: PluginSpec,
        function: str,
        data: bytes,
        grant: Grant,
        *,
        environ: Mapping[str, str] = os.environ,
    ) -> CallOutput:
        """Call `function` in a fresh instance under `grant`, on this thread. Blocks; raises SandboxError
        (`cancelled` after shutdown)."""
        config = _config_json(spec.config, grant, environ)
        pool, copy, compile_ms = self._checkout(spec, grant)
        try:
            job = native.Job(copy, function, data, config, grant.max_output_bytes)
        except BaseException:
            self._checkin(pool, copy)
            raise
        job.run(self._workers)
        return self._finish(spec, function, grant, pool, copy, job, compile_ms)

    def _finish(self, spec, function, grant, pool, copy, job: native.Job, compile_ms: float) -> CallOutput:
        """The ended job's output or SandboxError; its copy goes back to the pool unless the error spoils it."""
        result = job.result()
        error = self._error(spec, function, grant, result, job.cancel_requested)
        # After an interrupted call (timeout, cancel, trap) Extism's engine can end up where a later
        # cancel is lost and the next call runs unbounded (measured); such a compiled copy is dropped.
        # A call cancelled before it ran interrupted nothing.
        self._checkin(pool, copy, keep=error is None or error.kind in _REUSABLE_AFTER or not result.ran)
        if error is not None:
            raise error
        return CallOutput(result.output, compile_ms, 0.0 if result.used_spare else result.instantiate_ms, result.call_ms)

    @staticmethod
    def _error(spec, function, grant, result: native.Result, cancel_requested: bool) -> SandboxError | None:
        if result.stage == native.OK:
            if result.output_too_large:
                return SandboxError(
                    "invalid_output",
                    f"{function} returned {result.output_length} bytes, more than the grant's limit of {grant.max_output_bytes}",
                )
            return None
        if result.stage == native.NOT_FOUND:
            return SandboxError("not_found", f"{spec.name} has no export {function!r}")
        if result.stage == native.CANCELLED_BEFORE_START:
            return SandboxError("cancelled", "the call was cancelled before it started")
        if result.stage == native.SHUT_DOWN:
            return SandboxError("cancelled", "the sandbox host shut down")
        if result.stage == native.NO_WORKER:
            return SandboxError("cancelled", "the sandbox host could not start a worker thread")
        called = result.stage == native.CALL_FAILED
        causes = extism_log.causes_for(str(UUID(bytes=result.plugin_id))) if called else []
        return classify(result.error, causes, cancelled=called and cancel_requested,
                        timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)

    def _limit(self, name: str, limit: int) -> asyncio.Semaphore:
        # Semaphores belong to one event loop; tests and commands may run several loops in turn.
        loop = asyncio.get_running_loop()
        per_loop = self._limits.get(loop)
        if per_loop is None:
            per_loop = self._limits[loop] = {}
        current = per_loop.get(name)
        if current is None or current[0] != limit:
            current = per_loop[name] = (limit, asyncio.Semaphore(limit))
        return current[1]

    def _waker(self, loop: asyncio.AbstractEventLoop) -> native.Waker:
        waker = self._wakers.get(loop)
        if waker is None:
            # Loops on other threads share this host.
            with self._lock:
                waker = self._wakers.get(loop)
                if waker is None:
                    # A loop closed with calls pending is kept alive by them (their outcomes belong
                    # to it): let those go when the next loop comes.
                    for closed in [other for other in list(self._wakers) if other.is_closed()]:
                        self._wakers.pop(closed).release()
                    waker = self._wakers[loop] = native.Waker(loop)
                    weakref.finalize(loop, waker.release)
        return waker

    async def call(
        self,
        spec: PluginSpec,
        function: str,
        data: bytes,
        grant: Grant,
        *,
        cancel: asyncio.Event | None = None,
        on_start: Callable[[], None] | None = None,
    ) -> CallOutput:
        """Run `function` on a native worker. Setting `cancel` stops it and raises SandboxError("cancelled");
        cancelling the awaiting task stops it too and re-raises CancelledError once the plug-in has stopped
        (a call still waiting for a worker is dropped at once). `on_start` is called on the event loop
        once the plug-in is running."""
        what = f"{spec.name}.{function}"
        async with self._limit(spec.name, grant.max_concurrency):
            loop = asyncio.get_running_loop()
            config = _config_json(spec.config, grant, os.environ)
            pool, copy, compile_ms = self._idle_copy(spec, grant) or await self._checkout_off_loop(spec, grant)
            try:
                waker = self._waker(loop)
                # An instance opens its granted directories when it is made, and a call must see them
                # as they are when it runs: for such plug-ins nothing is made ahead.
                job = waker.job(copy, function, data, config, grant.max_output_bytes,
                                prepare_next=not grant.allowed_paths, notify_start=on_start is not None)
            except BaseException:
                self._checkin(pool, copy)
                raise
            # `outcome` is the caller's (cancelled with its task); `finished` is the call's own end,
            # which a cancelled caller waits for while the plug-in is stopped.
            outcome, finished = loop.create_future(), loop.create_future()

            def ended(job: native.Job):
                try:
                    result, error = self._finish(spec, function, grant, pool, copy, job, compile_ms), None
                except Exception as exc:
                    result, error = None, exc
                if outcome.cancelled():
                    if error is not None:
                        log.info("%s stopped: %s", what, error)
                else:
                    _settle(outcome, result, error)
                finished.set_result(None)

            waker.start(self._workers, job, ended, on_start)
            try:
                if cancel is not None:
                    waiter = asyncio.ensure_future(cancel.wait())
                    try:
                        await asyncio.wait({outcome, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not outcome.done():
                        stopped = await self._stop(finished, job, what)
                        if not outcome.done():
                            outcome.add_done_callback(_retrieve)
                            raise SandboxError("cancelled", "the call was cancelled before it started" if stopped
                                               else "the call was cancelled, but the plug-in could not be stopped")
                return await outcome
            except asyncio.CancelledError:
                try:
                    await self._stop(finished, job, what)
                except asyncio.CancelledError:
                    pass  # cancelled again while stopping: this CancelledError is raised below anyway
                outcome.add_done_callback(_retrieve)
                raise

    @staticmethod
    async def _stop(finished: asyncio.Future, job: native.Job, what: str) -> bool:
        """Cancel until the call ends, or at once if no worker has taken it (it will not run);
        False if the plug-in is still running after _RUNAWAY_S. A cancel of the awaiting task meanwhile
        is raised once the plug-in has stopped."""
        deadline = time.monotonic() + _RUNAWAY_S
        interrupted = False
        stopped = True
        while not finished.done():
            if not job.cancel(native.SAFE_CANCEL_DELAY_MS):
                break
            if time.monotonic() > deadline:
                log.error("%s could not be stopped: its thread keeps running until the process exits", what)
                stopped = False
                break
            try:
                await asyncio.wait({finished}, timeout=_CANCEL_RETRY_S)
            except asyncio.CancelledError:
                interrupted = True
        if interrupted:
            raise asyncio.CancelledError
        return stopped

    def shutdown(self):
        """Calls not started yet end as cancelled; running calls finish on their own; idle copies are freed."""
        self._workers.shutdown()
        self._release()
