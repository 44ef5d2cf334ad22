"""The Extism plug-in host: compiled plug-ins pooled per (wasm, grant), a fresh instance for every call.

`Host.run` is the blocking call (used by `runplugin` and discovery); `Host.call` is the async API: it
holds a per-plug-in concurrency limit, hands the call to a bounded pool of worker threads
(sandbox/workers.py), and stops the plug-in promptly (Extism's cancel handle) when the awaiting task is
cancelled or `cancel` is set.

A worker answers first and tidies after: it wakes the caller as soon as the plug-in returns, then frees
the used instance and, for plug-ins without granted paths, makes the fresh instance for the copy's
next call, so instantiating is off the caller's wait. Every call still runs in an instance no call
has used.
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

from common.redact import redact_bytes, remember

from .errors import SandboxError, classify
from .extism_log import extism_log
from .hostfns import functions_for
from .manifest import Grant, build_manifest, instance_config
from .net import CallNet, HttpPools, NetLimits, RateLimiter, Resolver, system_resolver
from .workers import CANCEL_RETRY_S, CANCELLED_BEFORE_START, Ticket, Workers

log = logging.getLogger(__name__)

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
    # The HTTP requests the call made (sandbox.net records): method, host, path, status, bytes,
    # duration_ms, and why one was refused.
    http: tuple = ()


@dataclass(frozen=True)
class CallSecrets:
    """A call's secret values, read from the environment when the call is made: those of its HTTP
    secrets by variable name (None: not set), and every value to redact from what comes out."""

    http: dict = field(default_factory=dict)
    values: tuple = ()


def call_secrets(spec_config: Mapping, grant: Grant, environ: Mapping[str, str]) -> tuple[dict, CallSecrets]:
    """The call's Extism config (secrets given as config included) and its CallSecrets."""
    config = instance_config(spec_config, grant, environ)
    http = {}
    try:
        http = {s.secret_env: environ.get(s.secret_env) for s in grant.policy.secrets}
    except ValueError:
        pass  # reported when the call starts
    values = tuple(v for v in (*(config[k] for k in grant.secret_env), *http.values()) if v)
    if values:
        remember(*values)
    return config, CallSecrets(http, values)


class _Copy:
    """One compiled plug-in, which of its exports exist, and the never-used instance made from it for
    its next call. The workers run one call at a time on it."""

    def __init__(self, compiled: CompiledPlugin):
        self.compiled = compiled
        self.exports: dict[str, bool] = {}
        self.spare: extism.Plugin | None = None
        self.spare_config: dict = {}

    def instantiate(self, config: dict) -> extism.Plugin:
        return extism.Plugin(self.compiled, config=config or None, functions=[])

    def exports_function(self, instance: extism.Plugin, name: str) -> bool:
        if name not in self.exports:
            self.exports[name] = instance.function_exists(name)
        return self.exports[name]


def _free(instance: extism.Plugin):
    instance.__del__()  # now, on this thread, not whenever the object is collected


@dataclass
class _Pool:
    """The verified wasm of one (sha256, WASI, grant) key and its compiled copies not in use (the
    most recently used last: its next instance is made or being made)."""

    key: tuple
    wasm: bytes = field(repr=False)
    idle: list[_Copy] = field(default_factory=list)
    # exoclaw's host functions the wasm imports (sandbox/hostfns.py), linked into each compiled copy.
    functions: list = field(default_factory=list, repr=False)


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000


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


def _on_loop(loop: asyncio.AbstractEventLoop, callback, *args):
    """Run callback(*args) on `loop`, from a worker thread."""
    try:
        loop.call_soon_threadsafe(callback, *args)
    except RuntimeError:
        pass  # the loop has closed with the call pending: nobody is left to tell


def _started(on_start: Callable[[], None]):
    try:
        on_start()
    except Exception:
        log.exception("a plug-in call's on_start callback failed")


class _Call:
    """One call of `function` on a checked-out copy, as a worker runs it: the plug-in is called in the
    copy's instance made ahead (or a new one), the copy goes back to its pool, the caller is answered
    (`answer(output, error)`, on the worker's thread), and only then is the copy tidied."""

    def __init__(self, host: "Host", pool: _Pool, copy: _Copy, spec: PluginSpec, function: str, data: bytes,
                 grant: Grant, config: dict, compile_ms: float, answer: Callable, *, prepare_next: bool = False,
                 on_start: Callable[[], None] | None = None, secrets: CallSecrets = CallSecrets()):
        self.copy = copy
        self.ticket = Ticket()
        self.owner = spec.name
        self._host, self._pool, self._spec, self._function, self._data = host, pool, spec, function, data
        self._grant, self._config, self._compile_ms, self._answer = grant, config, compile_ms, answer
        self._prepare_next, self._on_start, self._secrets = prepare_next, on_start, secrets

    def skip(self, reason: str):
        self._host._checkin(self._pool, self.copy)
        self._answer(None, SandboxError("cancelled", reason))

    def run(self):
        instance, error = None, None
        try:
            instance, instantiate_ms = self._instance()
            output, call_ms, http = self._call(instance)
        except Exception as exc:  # a SandboxError, or a bug: the caller gets it either way
            error = exc
            if isinstance(exc, SandboxError):
                exc = exc.redacted(self._secrets.values)
            # After an interrupted call (timeout, cancel, trap) Extism's engine can end up where a later
            # cancel is lost and the next call runs unbounded (measured); such a compiled copy is dropped.
            # A call cancelled before it ran interrupted nothing.
            reusable = isinstance(exc, SandboxError) and (exc.kind in _REUSABLE_AFTER or not self.ticket.ran)
            kept = self._host._checkin(self._pool, self.copy, keep=reusable)
            self._answer(None, exc)
        else:
            # Back in the pool before the answer: a next call takes this copy (and is handed to this
            # thread) rather than compiling another.
            kept = self._host._checkin(self._pool, self.copy)
            self._answer(CallOutput(redact_bytes(output, self._secrets.values), self._compile_ms, instantiate_ms, call_ms,
                                    http), None)
        # The caller has its answer; what follows is off its wait.
        if instance is not None:
            _free(instance)
        # An instance opens its granted directories when it is made, and a call must see them as they
        # are when it runs: for such plug-ins (prepare_next is False) nothing is made ahead.
        if error is None and kept and self._prepare_next and not self._host._workers.shut_down:
            try:
                self.copy.spare, self.copy.spare_config = self.copy.instantiate(self._config), self._config
            except extism.Error:
                pass  # the next call makes its own instance and reports the error

    def _failure(self, exc: extism.Error, causes: list[str] = ()) -> SandboxError:
        return classify(str(exc), list(causes), cancelled=self.ticket.cancelled, timeout_ms=self._grant.timeout_ms,
                        memory_mb=self._grant.memory_mb)

    def _instance(self) -> tuple[extism.Plugin, float]:
        """The copy's spare when it was made with this config (a secret may have changed since), else a
        new instance; and how long making it took on this call's path."""
        spare, self.copy.spare = self.copy.spare, None
        if spare is not None:
            if self.copy.spare_config == self._config:
                return spare, 0.0
            _free(spare)
        start = time.perf_counter()
        try:
            return self.copy.instantiate(self._config), _ms(start)
        except extism.Error as exc:
            raise self._failure(exc) from None

    def _net(self, instance: extism.Plugin) -> CallNet:
        """The call's HTTP context, which exoclaw's http_request finds through Extism's host context."""
        grant = self._grant
        try:
            policy = grant.policy
        except ValueError as exc:
            raise SandboxError("host_denied", f"the grant's allowed_hosts or http_secrets cannot be read: {exc}",
                               reason="bad_grant") from None
        limits = NetLimits(grant.max_http_response_bytes, grant.http_requests_per_call, grant.http_requests_per_minute)
        return CallNet(self._spec.name, policy, self._secrets.http, limits, time.monotonic() + grant.timeout_ms / 1000,
                       self._host._limiter, self._host._http, self._host._resolver, instance=instance)

    def _call(self, instance: extism.Plugin) -> tuple[bytes, float, tuple]:
        """The call's output, how long the call took and its HTTP requests."""
        function = self._function
        if not self.copy.exports_function(instance, function):
            raise SandboxError("not_found", f"{self._spec.name} has no export {function!r}")
        # A plug-in that imports none of exoclaw's HTTP functions makes no request: it gets no context.
        net = self._net(instance) if self._pool.functions else None
        if not self.ticket.attach(instance):
            raise SandboxError("cancelled", CANCELLED_BEFORE_START)
        if self._on_start is not None:
            self._on_start()
        start = time.perf_counter()
        try:
            buffer = instance.call(function, self._data, parse=None, host_context=net)
        except extism.Error as exc:
            causes = extism_log.causes_for(str(instance.id))
            error = (net and net.failure) or self._failure(exc, causes)
            error.http = tuple(net.records) if net else ()
            raise error from None
        finally:
            self.ticket.detach()
            if net is not None:
                net.instance = None
        call_ms = _ms(start)
        records = tuple(net.records) if net else ()
        if net is not None and net.failure is not None:  # a request failed and the plug-in carried on
            net.failure.http = records
            raise net.failure
        if len(buffer) > self._grant.max_output_bytes:
            error = SandboxError(
                "invalid_output",
                f"{function} returned {len(buffer)} bytes, more than the grant's limit of {self._grant.max_output_bytes}",
            )
            error.http = records
            raise error
        return bytes(buffer), call_ms, records


class Host:
    def __init__(self, max_workers: int = 16, cache_size: int = 64, *, resolver: Resolver = system_resolver,
                 ca_bundle: str | None = None):
        """`resolver(host, port)` gives the addresses of a host name a plug-in's request goes to
        (the operating system's resolver unless a test gives its own); `ca_bundle`, a PEM file of the
        CA certificates plug-ins' https requests are verified against (certifi's bundle if None)."""
        self._workers = Workers(max_workers)
        self._resolver = resolver
        self._http = HttpPools(ca_bundle)
        self._limiter = RateLimiter()
        self._pools: OrderedDict[tuple, _Pool] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._limits: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        # A host dropped without shutdown lets its idle worker threads end.
        weakref.finalize(self, self._workers.shutdown)
        extism_log.install()

    def _idle_copy(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, _Copy, float] | None:
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

    def _checkout(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, _Copy, float]:
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
            pool = self._pools.get(key) or self._pools.setdefault(key, _Pool(key, wasm, functions=functions_for(wasm)))
            self._pools.move_to_end(key)
            while len(self._pools) > self._cache_size:
                self._pools.popitem(last=False)
            if pool.idle:
                return pool, pool.idle.pop(), 0.0
        start = time.perf_counter()
        try:
            compiled = CompiledPlugin(build_manifest(pool.wasm, actual, grant), spec.wasi, pool.functions)
        except extism.Error as exc:
            error = classify(str(exc), [], cancelled=False, timeout_ms=grant.timeout_ms, memory_mb=grant.memory_mb)
            if error.kind == "hash_mismatch":
                raise error from None
            raise SandboxError("plugin_error", f"{spec.name}: cannot load the .wasm: {exc}") from None
        elapsed = _ms(start)
        return pool, _Copy(compiled), elapsed

    async def _checkout_off_loop(self, spec: PluginSpec, grant: Grant) -> tuple[_Pool, _Copy, float]:
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

    def _checkin(self, pool: _Pool, copy: _Copy, *, keep: bool = True) -> bool:
        """Return a copy to its pool; False if it is dropped instead (not to be kept, its pool evicted,
        or enough idle)."""
        with self._lock:
            if keep and self._pools.get(pool.key) is pool and len(pool.idle) < _MAX_IDLE_COMPILED:
                pool.idle.append(copy)
                return True
        return False

    def compile_ms(self, spec: PluginSpec, grant: Grant) -> float:
        """Make sure a compiled plug-in is ready; returns how long compiling took (0 when one was cached)."""
        pool, copy, elapsed = self._checkout(spec, grant)
        self._checkin(pool, copy)
        return elapsed

    def exports(self, spec: PluginSpec, grant: Grant, names: list[str]) -> set[str]:
        """Which of `names` the plug-in exports."""
        pool, copy, _ = self._checkout(spec, grant)
        try:
            with self._workers.hold(copy), extism.Plugin(copy.compiled, functions=[]) as instance:
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
    ) -> CallOutput:
        """Call `function` in a fresh instance under `grant`, on this thread. Blocks; raises SandboxError
        (`cancelled` after shutdown)."""
        config, secrets = call_secrets(spec.config, grant, environ)
        pool, copy, compile_ms = self._checkout(spec, grant)
        outcome = []
        self._workers.run(_Call(self, pool, copy, spec, function, data, grant, config, compile_ms,
                                lambda *answer: outcome.extend(answer), secrets=secrets))
        result, error = outcome
        if error is not None:
            raise error
        return result

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
        """Run `function` on a worker thread. Setting `cancel` stops it and raises SandboxError("cancelled");
        cancelling the awaiting task stops it too and re-raises CancelledError once the plug-in has stopped
        (a call still waiting for a worker is dropped at once). `on_start` is called on the event loop
        once the plug-in is running."""
        what = f"{spec.name}.{function}"
        async with self._limit(spec.name, grant.max_concurrency):
            loop = asyncio.get_running_loop()
            config, secrets = call_secrets(spec.config, grant, os.environ)
            pool, copy, compile_ms = self._idle_copy(spec, grant) or await self._checkout_off_loop(spec, grant)
            # `outcome` is the caller's (cancelled with its task); `finished` is the call's own end,
            # which a cancelled caller waits for while the plug-in is stopped.
            outcome, finished = loop.create_future(), loop.create_future()

            def ended(result: CallOutput | None, error: BaseException | None):
                if outcome.cancelled():
                    if error is not None:
                        log.info("%s stopped: %s", what, error)
                else:
                    _settle(outcome, result, error)
                finished.set_result(None)

            call = _Call(self, pool, copy, spec, function, data, grant, config, compile_ms,
                         functools.partial(_on_loop, loop, ended), prepare_next=not grant.allowed_paths,
                         on_start=on_start and functools.partial(_on_loop, loop, _started, on_start), secrets=secrets)
            self._workers.submit(call)
            try:
                if cancel is not None:
                    waiter = asyncio.ensure_future(cancel.wait())
                    try:
                        await asyncio.wait({outcome, waiter}, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waiter.cancel()
                    if not outcome.done():
                        stopped = await self._stop(finished, call.ticket, what)
                        if not outcome.done():
                            outcome.add_done_callback(_retrieve)
                            raise SandboxError("cancelled", CANCELLED_BEFORE_START if stopped
                                               else "the call was cancelled, but the plug-in could not be stopped")
                return await outcome
            except asyncio.CancelledError:
                try:
                    await self._stop(finished, call.ticket, what)
                except asyncio.CancelledError:
                    pass  # cancelled again while stopping: this CancelledError is raised below anyway
                outcome.add_done_callback(_retrieve)
                raise

    @staticmethod
    async def _stop(finished: asyncio.Future, ticket: Ticket, what: str) -> bool:
        """Cancel until the call ends, or at once if no worker has taken it (it will not run);
        False if the plug-in is still running after _RUNAWAY_S. A cancel of the awaiting task meanwhile
        is raised once the plug-in has stopped."""
        deadline = time.monotonic() + _RUNAWAY_S
        interrupted = False
        stopped = True
        while not finished.done():
            if not ticket.cancel():
                break
            if time.monotonic() > deadline:
                log.error("%s could not be stopped: its thread keeps running until the process exits", what)
                stopped = False
                break
            try:
                await asyncio.wait({finished}, timeout=CANCEL_RETRY_S)
            except asyncio.CancelledError:
                interrupted = True
        if interrupted:
            raise asyncio.CancelledError
        return stopped

    def shutdown(self):
        """Calls not started yet end as cancelled; running calls finish on their own; idle copies and
        idle HTTP connections are dropped."""
        self._workers.shutdown()
        with self._lock:
            self._pools.clear()
        self._http.close()
