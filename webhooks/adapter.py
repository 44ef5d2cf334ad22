"""Calling a channel-adapter plugin through the sandbox: JSON in, JSON out, a fresh instance per call.

Adapters parse untrusted bytes from the internet, so they run like any plugin, under the grant the
operator gave them for every agent (none: no network, no files, 16 MiB, 5 s).
"""

import json

from sandbox.errors import SandboxError
from sandbox.manifest import effective_grant
from sandbox.process_host import get_host


class AdapterFailed(Exception):
    """The adapter failed. `kind` is the sandbox's error kind: `plugin_error` means it refused the
    input; `trap`, `timeout`, `out_of_memory` and the rest mean it is broken. The message names the
    plugin and the function, for operators."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


async def call(plugin, function: str, payload: bytes):
    """Run `function` of the adapter `plugin` (its grants and their HTTP secrets prefetched) on `payload`;
    return its JSON output."""
    # The callers load `adapter__grants__http_secrets` with the endpoint, so this costs no query (and no thread hop).
    grant = effective_grant(plugin.grants.all(), None)
    try:
        result = await get_host().call(plugin.spec(), function, payload, grant)
    except SandboxError as e:
        raise AdapterFailed(e.kind, f"{plugin.name}.{function}: {e}") from None
    try:
        return json.loads(result.output)
    except (ValueError, RecursionError):
        raise AdapterFailed("invalid_output", f"{plugin.name}.{function}: did not return JSON") from None
