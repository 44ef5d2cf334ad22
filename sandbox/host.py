"""The Extism plug-in host: compiled plug-ins pooled per (wasm, grant), a fresh instance for every call.

`Host.run` is the blocking call (used by `runplugin` and the thread pool); `Host.call` is the async
API: it runs `run` in a bounded thread pool, holds a per-plug-in concurrency limit, and stops the
plug-in promptly (Extism's cancel handle) when the awaiting task is cancelled or `cancel` is set.

On the async path the worker answers first and tidies after: it frees the used instance and, for
plug-ins without granted paths, makes the fresh instance for the copy's next call once the caller has
its result, so instantiating (most of a small plug-in's cost) is off the caller's wait. Every call
still runs in an instance no call has used.
"""

import asyncio
import functools
import hashlib
import logging
import os
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import extism
from extism.extism import CompiledPlugin

from .errors import SandboxError, classify
from .extism_log import extism_log
from .manifest import Grant, build_manifest, instance_config
from .workers import DaemonPool

log = logging.getLogger(__name__)

# How often a cancel is repeated until the worker notices: Extism ignores a cancel sent before the call starts.
_CANCEL_RETRY_S = 0.01
_SAFE_CANCEL_DELAY_S = 0.02
# A cancelled call still running after this long cannot be stopped: it is abandoned (and logged).
_RUNAWAY_S = 3.0
# Compiled copies kept per (wasm, grant) for reuse; concurrent calls beyond this compile afresh.
_MAX_IDLE_COMPILED = 8
# A copy being tidied is back within about one instantiation. When none is idle, a plug-in that took
# longer than this to compile waits for it; a quicker one compiles another copy, which back-to-back
# calls then take turns with, each finding its instance made ahead.
_WAIT_RATHER_THAN_COMPILE_MS = 5.0
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
class _Instance:
    plugin: extism.Plugin
    cancel_handle: object
    config: dict

    def free(self):
        self.plugin.__del__()


@dataclass
class _Copy:
    """One compiled copy of a plug-in, which of its exports exist, and the never-used instance made
    from it for its next call."""

    compiled: CompiledPlugin
    exports: dict[str, bool] = field(default_factory=dict)
    spare: _Instance | None = None

    def instantiate(self, config: dict) -> _Instance:
        plugin = extism.Plugin(self.compiled, config=config or None, functions=[])
        return _Instance(plugin, plugin.cancel_handle(), config)

    def exports_function(self, instance: _Instance, name: str) -> bool:
        if name not in self.exports:
            self.exports[name] = instance.plugin.function_exists(name)
        return self.exports[name]


@dataclass
class _Pool:
    """The verified wasm of one (sha256, WASI, grant) key, its compiled copies not in use, how many
    copies are being tidied, and how long compiling one took."""

    key: tuple
    wasm: bytes = field(repr=False)
    idle: list[_Copy] = field(default_factory=list)
    tidying: int = 0
    compile_ms: float = 0.0


class _Ticket:
    """Connects a call to whoever may cancel it; the handle is only valid while the instance lives.

    A call cancelled before a worker takes it never runs. Extism loses a cancel that lands while a
    call is still starting, and then that call ignores its timeout too (measured: about 1 in 100
    immediate cancels). So a cancel is only sent once the call has been running for
    _SAFE_CANCEL_DELAY_S; until then it is recorded and sent by a later retry.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._handle = None
        self._started_at = 0.0
        self.taken = False
        self.ran = False
        self.cancelled = False

    def take(self) -> bool:
        """A worker takes the call: False if it was cancelled while it waited."""
        with self._lock:
            self.taken = not self.cancelled
            return self.taken

    def attach(self, handle) -> bool:
        with self._lock:
            self._handle = handle
            self._started_at = time.monotonic()
            self.ran = not self.cancelled
            return self.ran

    def detach(self):
        with self._lock:
            self._handle = None

    def cancel(self) -> bool:
        """Cancel the call; False if no worker had taken it (and so none will run it)."""
        with self._lock:
            self.cancelled = True
            if self._handle is not None and time.monotonic() - self._started_at >= _SAFE_CANCEL_DELAY_S:
                self._handle.cancel()
            return self.taken


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


def _settle(outcome: asyncio.Future, result, error: BaseException | None):
    if not outcome.done():
        if error is None:
            outcome.set_result(result)
        else:
            outcome.set_exception(error)


def _settle_from_thread(outcome: asyncio.Future, result, error: BaseException | None):
    loop = outcome.get_loop()
    try:
        loop.call_soon_threadsafe(_settle, outcome, result, error)
    except RuntimeError:
        # The loop has closed (its caller gave up long ago); nobody is left to tell.
        pass


def _retrieve(outcome: asyncio.Future):
    # The caller gave up on this outcome: read its error here so asyncio does not report it as lost.
    if not outcome.cancelled():
        outcome.exception()


class Host:
    def __init__(self, max_workers: int = 16, cache_size: int = 64):
        self._executor = DaemonPool(max_workers, "extism")
        self._pools: OrderedDict[tuple, _Pool] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._copy_back = threading.Condition(self._lock)
        self._limits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        extism_log.install()

    def _take_idle(self, pool: _Pool) -> _Copy | None:
        """An idle copy, after waiting for one being tidied if none is idle and compiling is slow; None
        if compiling another is the quicker way. Called with the lock held."""
        while not pool.idle and pool.tidying and pool.compile_ms >= _WAIT_RATHER_THAN_COMPILE_MS:
            self._copy_back.wait()
        return pool.idle.pop() if pool.idle else None

    def _checkout(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, _Copy, float]:
        """An idle compiled plug-in for this wasm and grant (compiling one if none is idle, see
        _WAIT_RATHER_THAN_COMPILE_MS), and the compile time.

        Extism stops a call (timeout or cancel) by bumping its compiled plug-in's engine epoch, which
        interrupts every instance running from that engine; so no two calls run from the same one.
        """
        key = (spec.sha256, spec.wasi, grant.fingerprint) if spec.sha256 else None
        with self._lock:
            pool = self._pools.get(key) if key else None
            if pool is not None:
                self._pools.move_to_end(key)
                if (copy := self._take_idle(pool)) is not None:
                    return pool, copy, 0.0
        if pool is None:
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
                    self._pools.popitem(last=False)
                if (copy := self._take_idle(pool)) is not None:
                    return pool, copy, 0.0
        start = time.perf_counter()
        try:
            compiled = CompiledPlugin(build_manifest(pool.wasm, key[0], grant), spec.wasi, [])
        except extism.Error as exc:
            error = classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)
            if error.kind == "hash_mismatch":
                raise error from None
            raise SandboxError("plugin_error", f"{spec.name}: cannot load the .wasm: {exc}") from None
        elapsed = _ms(start)
        pool.compile_ms = elapsed
        return pool, _Copy(compiled), elapsed

    def _keeps(self, pool: _Pool) -> bool:
        """Whether a copy checked in now would be kept. Called with the lock held."""
        return self._pools.get(pool.key) is pool and len(pool.idle) < _MAX_IDLE_COMPILED

    def _checkin(self, pool: _Pool, copy: _Copy | None, *, tidied: bool = False):
        """Return a copy to its pool (None: it is dropped); `tidied` ends the tidying `run` announced."""
        with self._lock:
            if tidied:
                pool.tidying -= 1
            if copy is not None and self._keeps(pool):
                pool.idle.append(copy)
            self._copy_back.notify_all()

    def compile_ms(self, spec: PluginSpec, grant: Grant) -> float:
        """Make sure a compiled plug-in is ready; returns how long compiling took (0 when one was cached)."""
        pool, copy, elapsed = self._checkout(spec, grant)
        self._checkin(pool, copy)
        return elapsed

    def exports(self, spec: PluginSpec, grant: Grant, names: list[str]) -> set[str]:
        """Which of `names` the plug-in exports."""
        pool, copy, _ = self._checkout(spec, grant)
        try:
            with extism.Plugin(copy.compiled, functions=[]) as instance:
                return {name for name in names if instance.function_exists(name)}
        except extism.Error as exc:
            raise classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb) from None
        finally:
            self._checkin(pool, copy)

    def run(
        self,
        spec: PluginSpec,
        function: str,
        data: bytes,
        grant: Grant,
        *,
        environ: Mapping[str, str] = os.environ,
        ticket: _Ticket | None = None,
        on_start: Callable[[], None] | None = None,
        defer: list | None = None,
    ) -> CallOutput:
        """Call `function` in a fresh instance under `grant`. Blocks; raises SandboxError.

        Given `defer`, the tidying is appended to it instead of done before returning, and includes
        making the instance for the copy's next call unless the grant opens paths: an instance opens
        its granted directories when it is made, and a call must see them as they are when it runs."""
        ticket = ticket or _Ticket()
        config = instance_config(spec.config, grant, environ)
        pool, copy, compile_ms = self._checkout(spec, grant)
        instance, reusable = None, False
        try:
            instance, instantiate_ms = self._instance(copy, config, grant)
            output = self._call_instance(spec, copy, instance, function, data, grant, ticket, on_start)
            reusable = True
            return CallOutput(output[0], compile_ms, instantiate_ms, output[1])
        except SandboxError as exc:
            # After an interrupted call (timeout, cancel, trap) Extism's engine can end up where a later
            # cancel is lost and the next call runs unbounded (measured); such a compiled copy is dropped.
            # A call cancelled before it ran interrupted nothing.
            reusable = exc.kind in _REUSABLE_AFTER or (exc.kind == "cancelled" and not ticket.ran)
            raise
        finally:
            if defer is None:
                self._tidy(pool, copy, instance, reusable, next_config=None, deferred=False)
            else:
                with self._lock:
                    pool.tidying += 1
                prepare = reusable and not grant.allowed_paths
                defer.append(functools.partial(
                    self._tidy, pool, copy, instance, reusable, next_config=config if prepare else None, deferred=True
                ))

    @staticmethod
    def _instance(copy: _Copy, config: dict, grant: Grant) -> tuple[_Instance, float]:
        """The copy's spare when it was made with this config (a secret may have changed since), else a
        new instance; and how long making it took on this call's path."""
        spare, copy.spare = copy.spare, None
        if spare is not None:
            if spare.config == config:
                return spare, 0.0
            spare.free()
        start = time.perf_counter()
        try:
            return copy.instantiate(config), _ms(start)
        except extism.Error as exc:
            raise classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb) from None

    def _tidy(self, pool: _Pool, copy: _Copy, used: _Instance | None, reusable: bool, *,
              next_config: dict | None, deferred: bool):
        """Free the used instance, make the copy's next one if asked and the copy is to be kept, check it in."""
        try:
            if used is not None:
                used.free()
            if reusable and next_config is not None:
                with self._lock:
                    kept = self._keeps(pool)
                if kept:
                    try:
                        copy.spare = copy.instantiate(next_config)
                    except extism.Error:
                        pass  # the next call makes its own instance and reports the error
        finally:
            self._checkin(pool, copy if reusable else None, tidied=deferred)

    @staticmethod
    def _call_instance(spec, copy, instance, function, data, grant, ticket, on_start) -> tuple[bytes, float]:
        """The call's output and how long the call took."""
        if not copy.exports_function(instance, function):
            raise SandboxError("not_found", f"{spec.name} has no export {function!r}")
        if not ticket.attach(instance.cancel_handle):
            raise SandboxError("cancelled", "the call was cancelled before it started")
        if on_start is not None:
            on_start()
        start = time.perf_counter()
        try:
            buffer = instance.plugin.call(function, data, parse=None)
            if len(buffer) > grant.max_output_bytes:
                raise SandboxError(
                    "invalid_output",
                    f"{function} returned {len(buffer)} bytes, more than the grant's limit of {grant.max_output_bytes}",
                )
            return bytes(buffer), _ms(start)
        except extism.Error as exc:
            causes = extism_log.causes_for(str(instance.plugin.id))
            raise classify(
                str(exc), causes, cancelled=ticket.cancelled, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb
            ) from None
        finally:
            ticket.detach()

    def _limit(self, name: str, limit: int) -> asyncio.Semaphore:
        # Semaphores belong to one event loop; tests and commands may run several loops in turn.
        per_loop = self._limits.setdefault(asyncio.get_running_loop(), {})
        current = per_loop.get(name)
        if current is None or current[0] != limit:
            current = per_loop[name] = (limit, asyncio.Semaphore(limit))
        return current[1]

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
        """Run `function` in the thread pool. Setting `cancel` stops it and raises SandboxError("cancelled");
        cancelling the awaiting task stops it too and re-raises CancelledError once the plug-in has stopped
        (a call still waiting for a worker is dropped at once)."""
        what = f"{spec.name}.{function}"
        async with self._limit(spec.name, grant.max_concurrency):
            ticket = _Ticket()
            outcome = asyncio.get_running_loop().create_future()
            self._executor.start(
                functools.partial(self._serve, outcome, spec, function, data, grant, ticket, on_start),
                abandon=functools.partial(_settle_from_thread, outcome, None, SandboxError("cancelled", "the sandbox host shut down")),
            )
            try:
                if cancel is not None:
                    waiter = asyncio.ensure_future(cancel.wait())
                    try:
                        await asyncio.wait({outcome, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not outcome.done():
                        stopped = await self._stop(outcome, ticket, what)
                        if not outcome.done():
                            outcome.add_done_callback(_retrieve)
                            raise SandboxError("cancelled", "the call was cancelled before it started" if stopped
                                               else "the call was cancelled, but the plug-in could not be stopped")
                # Shielded: `outcome` must outlive a cancelled await, so the plug-in can be stopped and waited for.
                return await asyncio.shield(outcome)
            except asyncio.CancelledError:
                await self._stop(outcome, ticket, what)
                if not outcome.done():
                    outcome.add_done_callback(_retrieve)
                elif outcome.exception() is not None:
                    log.info("%s stopped: %s", what, outcome.exception())
                raise

    def _serve(self, outcome, spec, function, data, grant, ticket, on_start):
        """The worker's side of `call`: wake the caller as soon as the result is known, then tidy."""
        if not ticket.take():
            _settle_from_thread(outcome, None, SandboxError("cancelled", "the call was cancelled before it started"))
            return
        deferred: list = []
        try:
            result = self.run(spec, function, data, grant, ticket=ticket, on_start=on_start, defer=deferred)
        except BaseException as exc:
            _settle_from_thread(outcome, None, exc)
        else:
            _settle_from_thread(outcome, result, None)
        for step in deferred:
            step()

    @staticmethod
    async def _stop(outcome: asyncio.Future, ticket: _Ticket, what: str) -> bool:
        """Cancel until the worker returns, or at once if no worker has taken the call (it will not run);
        False if the plug-in is still running after _RUNAWAY_S."""
        deadline = time.monotonic() + _RUNAWAY_S
        while not outcome.done():
            if not ticket.cancel():
                return True
            if time.monotonic() > deadline:
                log.error("%s could not be stopped: its thread keeps running until the process exits", what)
                return False
            try:
                await asyncio.wait({outcome}, timeout=_CANCEL_RETRY_S)
            except asyncio.CancelledError:
                continue
        return True

    def shutdown(self):
        self._executor.shutdown()
