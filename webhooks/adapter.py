"""Calling a channel-adapter plugin: JSON in, JSON out, in a fresh Extism instance off the event loop.

Adapters parse untrusted bytes from the internet, so they run like any plugin: no host functions,
no network, no files, a memory cap and a timeout (from the plugin's grant for every agent, if any).
"""

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from threading import Lock

import extism
from extism.extism import CompiledPlugin

from sandbox.models import DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS

_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="adapter")
_compiled: dict[tuple, CompiledPlugin] = {}
_lock = Lock()
WASM_PAGE = 64 * 1024


class AdapterFailed(Exception):
    """The adapter failed: `kind` is `plugin_error` (it refused the input), `trap`, `timeout`,
    `out_of_memory`, `not_found` or `invalid_output`; the message is for operators."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class Limits:
    memory_mb: int = DEFAULT_MEMORY_MB
    timeout_ms: int = DEFAULT_TIMEOUT_MS


def _limits(plugin) -> Limits:
    # The callers prefetch `adapter__grants` with the endpoint, so this costs no query (and no thread hop).
    grant = next((g for g in plugin.grants.all() if g.agent_id is None), None)
    return Limits(grant.memory_mb, grant.timeout_ms) if grant else Limits()


def _compile(plugin, limits: Limits) -> CompiledPlugin:
    key = (plugin.sha256, limits)
    with _lock:
        hit = _compiled.get(key)
    if hit is None:
        manifest = {
            "wasm": [{"data": plugin.read_wasm(), "hash": plugin.sha256}],
            "memory": {"max_pages": limits.memory_mb * 1024 * 1024 // WASM_PAGE},
            "timeout_ms": limits.timeout_ms,
        }
        hit = CompiledPlugin(manifest, False, [])
        with _lock:
            _compiled[key] = hit
    return hit


def _error_kind(message: str) -> str:
    if message == "timeout":
        return "timeout"
    if message == "oom" or "out of memory" in message.lower():
        return "out_of_memory"
    if message.startswith("Function not found"):
        return "not_found"
    if "wasm backtrace" in message:
        return "trap"
    return "plugin_error"


def _call_sync(plugin, limits: Limits, function: str, payload: bytes):
    try:
        instance = extism.Plugin(_compile(plugin, limits))
        out = instance.call(function, payload)
    except extism.Error as e:
        kind = _error_kind(str(e))
        detail = "the adapter crashed (wasm trap)" if kind == "trap" else str(e)
        raise AdapterFailed(kind, f"{plugin.name}.{function}: {detail}") from None
    try:
        return json.loads(out)
    except ValueError:
        raise AdapterFailed("invalid_output", f"{plugin.name}.{function} did not return JSON") from None


async def call(plugin, function: str, payload: bytes):
    """Run `function` of the adapter `plugin` (its grants prefetched) on `payload`; return its JSON output."""
    limits = _limits(plugin)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_pool, _call_sync, plugin, limits, function, payload)
