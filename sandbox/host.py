"""The Extism plug-in host: compile once per (wasm, grant), a fresh instance for every call.

`Host.run` is the blocking call (used by `runplugin` and the thread pool); `Host.call` is the async
API: it runs `run` in a bounded thread pool, holds a per-plug-in concurrency limit, and stops the
plug-in at once (Extism's cancel handle) when the awaiting task is cancelled or `cancel` is set.
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
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import extism
from extism.extism import CompiledPlugin

from .errors import SandboxError, classify
from .extism_log import extism_log
from .manifest import Grant, build_manifest, instance_config

log = logging.getLogger(__name__)

# How often a cancel is repeated until the worker notices: Extism ignores a cancel that lands in the
# instant between instantiation and the start of the call.
_CANCEL_RETRY_S = 0.05


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


class _Ticket:
    """Connects a running call to whoever may cancel it; the handle is only valid while the instance lives."""

    def __init__(self):
        self._lock = threading.Lock()
        self._handle = None
        self.cancelled = False

    def attach(self, handle) -> bool:
        with self._lock:
            self._handle = handle
            return not self.cancelled

    def detach(self):
        with self._lock:
            self._handle = None

    def cancel(self):
        with self._lock:
            self.cancelled = True
            if self._handle is not None:
                self._handle.cancel()


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


class Host:
    def __init__(self, max_workers: int = 16, cache_size: int = 64):
        self._executor = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="extism")
        self._cache: OrderedDict[tuple, CompiledPlugin] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._limits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        extism_log.install()

    def compiled(self, spec: PluginSpec, grant: Grant) -> tuple[CompiledPlugin, float]:
        """The compiled plug-in for this wasm and grant, and how long compiling took (0 when cached)."""
        if spec.sha256:
            key = (spec.sha256, spec.wasi, grant.fingerprint)
            with self._lock:
                hit = self._cache.get(key)
                if hit is not None:
                    self._cache.move_to_end(key)
                    return hit, 0.0
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
            hit = self._cache.get(key)
            if hit is not None:
                return hit, 0.0
        start = time.perf_counter()
        try:
            compiled = CompiledPlugin(build_manifest(wasm, actual, grant), spec.wasi, [])
        except extism.Error as exc:
            error = classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)
            if error.kind == "hash_mismatch":
                raise error from None
            raise SandboxError("plugin_error", f"{spec.name}: cannot load the .wasm: {exc}") from None
        elapsed = _ms(start)
        with self._lock:
            self._cache[key] = compiled
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return compiled, elapsed

    def _instance(self, spec: PluginSpec, grant: Grant, config: dict) -> extism.Plugin:
        compiled, _ = self.compiled(spec, grant)
        try:
            return extism.Plugin(compiled, config=config, functions=[])
        except extism.Error as exc:
            raise classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb) from None

    def exports(self, spec: PluginSpec, grant: Grant, names: list[str]) -> set[str]:
        """Which of `names` the plug-in exports."""
        with self._instance(spec, grant, {}) as instance:
            return {name for name in names if instance.function_exists(name)}

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
        compiled, compile_ms = self.compiled(spec, grant)
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
            try:
                if cancel is not None:
                    waiter = asyncio.ensure_future(cancel.wait())
                    try:
                        await asyncio.wait({asyncio.wrap_future(work), waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not work.done():
                        await self._stop(work, ticket)
                return await asyncio.wrap_future(work)
            except asyncio.CancelledError:
                await self._stop(work, ticket)
                if not work.cancelled() and work.exception() is not None:
                    log.info("%s.%s stopped: %s", spec.name, function, work.exception())
                raise

    @staticmethod
    async def _stop(work: Future, ticket: _Ticket):
        while not work.done():
            ticket.cancel()
            try:
                await asyncio.wait({asyncio.wrap_future(work)}, timeout=_CANCEL_RETRY_S)
            except asyncio.CancelledError:
                continue

    def shutdown(self):
        self._executor.shutdown(wait=False, cancel_futures=True)
