"""The Extism plug-in host: compiled plug-ins pooled per (wasm, grant), a fresh instance for every call.

`Host.run` is the blocking call (used by `runplugin` and the thread pool); `Host.call` is the async
API: it runs `run` in a bounded thread pool, holds a per-plug-in concurrency limit, and stops the
plug-in promptly (Extism's cancel handle) when the awaiting task is cancelled or `cancel` is set.
"""

import asyncio
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
    output: bytes
    compile_ms: float
    instantiate_ms: float
    call_ms: float


@dataclass
class _Pool:
    """The verified wasm of one (sha256, WASI, grant) key and its compiled copies not in use."""

    wasm: bytes = field(repr=False)
    idle: list = field(default_factory=list)


class _Ticket:
    """Connects a running call to whoever may cancel it; the handle is only valid while the instance lives.

    Extism loses a cancel that lands while a call is still starting, and then that call ignores its
    timeout too (measured: about 1 in 100 immediate cancels). So a cancel is only sent once the call
    has been running for _SAFE_CANCEL_DELAY_S; until then it is recorded and sent by a later retry.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._handle = None
        self._started_at = 0.0
        self.cancelled = False

    def attach(self, handle) -> bool:
        with self._lock:
            self._handle = handle
            self._started_at = time.monotonic()
            return not self.cancelled

    def detach(self):
        with self._lock:
            self._handle = None

    def cancel(self):
        with self._lock:
            self.cancelled = True
            if self._handle is not None and time.monotonic() - self._started_at >= _SAFE_CANCEL_DELAY_S:
                self._handle.cancel()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class Host:
    def __init__(self, max_workers: int = 16, cache_size: int = 64):
        self._executor = DaemonPool(max_workers, "extism")
        self._pools: OrderedDict[tuple, _Pool] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._limits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        extism_log.install()

    def _checkout(self, spec: PluginSpec, grant: Grant) -> tuple[tuple, CompiledPlugin, float]:
        """An idle compiled plug-in for this wasm and grant (compiling one if none is idle), and the compile time.

        Extism stops a call (timeout or cancel) by bumping its compiled plug-in's engine epoch, which
        interrupts every instance running from that engine; so no two calls run from the same one.
        """
        key = (spec.sha256, spec.wasi, grant.fingerprint) if spec.sha256 else None
        with self._lock:
            pool = self._pools.get(key) if key else None
            if pool is not None:
                self._pools.move_to_end(key)
                if pool.idle:
                    return key, pool.idle.pop(), 0.0
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
                pool = self._pools.setdefault(key, _Pool(wasm))
                self._pools.move_to_end(key)
                while len(self._pools) > self._cache_size:
                    self._pools.popitem(last=False)
                if pool.idle:
                    return key, pool.idle.pop(), 0.0
        start = time.perf_counter()
        try:
            compiled = CompiledPlugin(build_manifest(pool.wasm, key[0], grant), spec.wasi, [])
        except extism.Error as exc:
            error = classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)
            if error.kind == "hash_mismatch":
                raise error from None
            raise SandboxError("plugin_error", f"{spec.name}: cannot load the .wasm: {exc}") from None
        return key, compiled, _ms(start)

    def _checkin(self, key: tuple, compiled: CompiledPlugin, *, reusable: bool = True):
        with self._lock:
            pool = self._pools.get(key)
            if reusable and pool is not None and len(pool.idle) < _MAX_IDLE_COMPILED:
                pool.idle.append(compiled)

    def compile_ms(self, spec: PluginSpec, grant: Grant) -> float:
        """Make sure a compiled plug-in is ready; returns how long compiling took (0 when one was cached)."""
        key, compiled, elapsed = self._checkout(spec, grant)
        self._checkin(key, compiled)
        return elapsed

    def exports(self, spec: PluginSpec, grant: Grant, names: list[str]) -> set[str]:
        """Which of `names` the plug-in exports."""
        key, compiled, _ = self._checkout(spec, grant)
        try:
            with extism.Plugin(compiled, functions=[]) as instance:
                return {name for name in names if instance.function_exists(name)}
        except extism.Error as exc:
            raise classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb) from None
        finally:
            self._checkin(key, compiled)

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
    ) -> CallOutput:
        """Call `function` in a fresh instance under `grant`. Blocks; raises SandboxError."""
        ticket = ticket or _Ticket()
        config = instance_config(spec.config, grant, environ)
        key, compiled, compile_ms = self._checkout(spec, grant)
        reusable = False
        try:
            output = self._call_instance(spec, compiled, function, data, grant, config, ticket, on_start, compile_ms)
            reusable = True
            return output
        except SandboxError as exc:
            # After an interrupted call (timeout, cancel, trap) Extism's engine can end up where a later
            # cancel is lost and the next call runs unbounded (measured); such a compiled copy is dropped.
            reusable = exc.kind in _REUSABLE_AFTER
            raise
        finally:
            self._checkin(key, compiled, reusable=reusable)

    def _call_instance(self, spec, compiled, function, data, grant, config, ticket, on_start, compile_ms) -> CallOutput:
        start = time.perf_counter()
        try:
            instance = extism.Plugin(compiled, config=config or None, functions=[])
        except extism.Error as exc:
            raise classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb) from None
        with instance:
            if not instance.function_exists(function):
                raise SandboxError("not_found", f"{spec.name} has no export {function!r}")
            instantiate_ms = _ms(start)
            if not ticket.attach(instance.cancel_handle()):
                raise SandboxError("cancelled", "the call was cancelled before it started")
            if on_start is not None:
                on_start()
            start = time.perf_counter()
            try:
                buffer = instance.call(function, data, parse=None)
                if len(buffer) > grant.max_output_bytes:
                    raise SandboxError(
                        "invalid_output",
                        f"{function} returned {len(buffer)} bytes, more than the grant's limit of {grant.max_output_bytes}",
                    )
                output = bytes(buffer)
            except extism.Error as exc:
                causes = extism_log.causes_for(str(instance.id))
                raise classify(
                    str(exc), causes, cancelled=ticket.cancelled, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb
                ) from None
            finally:
                ticket.detach()
            return CallOutput(output, compile_ms, instantiate_ms, _ms(start))

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
        cancelling the awaiting task stops it too and re-raises CancelledError once the plug-in has stopped."""
        async with self._limit(spec.name, grant.max_concurrency):
            ticket = _Ticket()
            # The concurrent future outlives a cancelled await, so the plug-in can be stopped and waited for.
            work = self._executor.submit(self.run, spec, function, data, grant, ticket=ticket, on_start=on_start)
            outcome = asyncio.wrap_future(work)
            try:
                if cancel is not None:
                    waiter = asyncio.ensure_future(cancel.wait())
                    try:
                        await asyncio.wait({outcome, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not outcome.done() and not await self._stop(outcome, ticket, f"{spec.name}.{function}"):
                        raise SandboxError("cancelled", "the call was cancelled, but the plug-in could not be stopped")
                return await outcome
            except asyncio.CancelledError:
                # Awaiting `outcome` when the task was cancelled cancelled it too; watch the worker afresh.
                stopping = outcome if not outcome.cancelled() else asyncio.wrap_future(work)
                await self._stop(stopping, ticket, f"{spec.name}.{function}")
                if stopping.done() and not stopping.cancelled() and stopping.exception() is not None:
                    log.info("%s.%s stopped: %s", spec.name, function, stopping.exception())
                raise

    @staticmethod
    async def _stop(outcome: asyncio.Future, ticket: _Ticket, what: str) -> bool:
        """Cancel until the worker returns; False if it is still running after _RUNAWAY_S."""
        deadline = time.monotonic() + _RUNAWAY_S
        while not outcome.done():
            if time.monotonic() > deadline:
                log.error("%s could not be stopped: its thread keeps running until the process exits", what)
                return False
            ticket.cancel()
            try:
                await asyncio.wait({outcome}, timeout=_CANCEL_RETRY_S)
            except asyncio.CancelledError:
                continue
        return True

    def shutdown(self):
        self._executor.shutdown()
