"""exoclaw's `http_request`, `http_status_code` and `http_headers`, linked into every plug-in.

Functions of these names in Extism's `extism:host/env` namespace replace Extism's built-in ones for
the plug-in (Extism's linker lets user functions shadow its own; measured, see NOTES.md), so any
plug-in built with an Extism PDK gets exoclaw's checks unmodified. They run on the thread running
the plug-in and find their call through Extism's host context: a `sandbox.net.CallNet`.

A refused or failed request stops the plug-in (its cancel handle) and becomes the call's error: the
host raises `CallNet.failure` whatever the plug-in does afterwards.
"""

import json
import logging
import re

import extism
from extism import ValType

from .errors import SandboxError
from .net import CallNet, header_value_ok

log = logging.getLogger(__name__)

NAMESPACE = "extism:host/env"
# A header name (RFC 9110 token).
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")


def _net(plugin) -> CallNet | None:
    net = plugin.host_context()
    return net if isinstance(net, CallNet) else None


def _store(plugin, data: bytes) -> int:
    if not data:
        return 0
    memory = plugin.alloc(len(data))
    plugin.memory(memory)[:] = data
    return memory.offset


def _parse_request(plugin, request_offset, body_offset) -> tuple[str, str, dict, bytes | None]:
    try:
        request = json.loads(plugin.input_bytes(request_offset))
    except (ValueError, UnicodeDecodeError):
        raise SandboxError("host_denied", "HTTP request refused (bad_request): the request is not JSON",
                           reason="bad_request") from None
    if not isinstance(request, dict):
        raise SandboxError("host_denied", "HTTP request refused (bad_request): the request is not a JSON object",
                           reason="bad_request")
    headers = request.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) and _TOKEN.fullmatch(k)
                                                and header_value_ok(v) for k, v in headers.items()):
        raise SandboxError("host_denied", "HTTP request refused (bad_request): headers must be an object of strings, "
                           "names HTTP tokens, values Latin-1 without line breaks", reason="bad_request")
    body = plugin.input_bytes(body_offset) if body_offset.value else None
    return request.get("method") or "GET", request.get("url"), headers, body


@extism.host_fn(name="http_request", namespace=NAMESPACE, signature=([ValType.I64, ValType.I64], [ValType.I64]))
def http_request(plugin, inputs, outputs, *user_data):
    outputs[0].value = 0
    net = _net(plugin)
    if net is None:  # not a call the host made: nothing is reachable
        return
    try:
        method, url, headers, body = _parse_request(plugin, inputs[0], inputs[1])
        outputs[0].value = _store(plugin, net.request(method, url, headers, body))
    except SandboxError as exc:
        net.failure = net.failure or exc
        net.stop()
    except Exception as exc:  # a bug here must not pass silently as an empty response
        log.exception("exoclaw's http_request failed")
        net.failure = net.failure or SandboxError("plugin_error", f"unexpected failure in the host's HTTP: {type(exc).__name__}")
        net.stop()


@extism.host_fn(name="http_status_code", namespace=NAMESPACE, signature=([], [ValType.I32]))
def http_status_code(plugin, inputs, outputs, *user_data):
    net = _net(plugin)
    outputs[0].value = net.status if net is not None else 0


@extism.host_fn(name="http_headers", namespace=NAMESPACE, signature=([], [ValType.I64]))
def http_headers(plugin, inputs, outputs, *user_data):
    net = _net(plugin)
    outputs[0].value = _store(plugin, json.dumps(net.headers).encode()) if net is not None and net.status else 0


FUNCTIONS = [http_request, http_status_code, http_headers]


def _leb(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, i


def _limits(data: bytes, i: int) -> int:
    flags = data[i]
    _, i = _leb(data, i + 1)
    return _leb(data, i)[1] if flags & 1 else i


def wasm_imports(wasm: bytes) -> set[tuple[str, str]]:
    """The (module, name) pairs a wasm module imports, read from its import section."""
    found = set()
    i = 8  # magic and version
    while i < len(wasm):
        section = wasm[i]
        size, i = _leb(wasm, i + 1)
        if section != 2:
            i += size
            continue
        count, i = _leb(wasm, i)
        for _ in range(count):
            length, i = _leb(wasm, i)
            module = wasm[i : i + length].decode()
            length, i = _leb(wasm, i + length)
            name = wasm[i : i + length].decode()
            i += length
            kind = wasm[i]
            i += 1
            if kind == 0:  # function: a type index
                _, i = _leb(wasm, i)
            elif kind == 1:  # table: a reference type, then limits
                i = _limits(wasm, i + 1)
            elif kind == 2:  # memory: limits
                i = _limits(wasm, i)
            elif kind == 3:  # global: a value type and mutability
                i += 2
            elif kind == 4:  # tag: an attribute and a type index
                _, i = _leb(wasm, i + 1)
            else:
                raise ValueError(f"unknown import kind {kind}")
            found.add((module, name))
        break
    return found


def functions_for(wasm: bytes) -> list:
    """exoclaw's host functions the module imports (linking the others costs every instance for
    nothing); all of them when the module cannot be read, so none of Extism's own is ever used."""
    try:
        imported = wasm_imports(wasm)
    except (IndexError, ValueError, UnicodeDecodeError):
        return list(FUNCTIONS)
    return [f for f in FUNCTIONS if (NAMESPACE, f.name) in imported]
