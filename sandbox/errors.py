"""The sandbox's one error type and the single place where Extism's failures are mapped to it."""

import re

KINDS = (
    "timeout",
    "cancelled",
    "out_of_memory",
    "trap",
    "host_denied",
    "network_error",
    "plugin_error",
    "invalid_output",
    "not_found",
    "hash_mismatch",
)

# A plug-in may report that the sandbox refused it (a WASI path outside its grant, say) by setting
# an Extism error that starts with this prefix; see docs/plugins.md.
HOST_DENIED_PREFIX = "host_denied:"

_HTTP_DENIED = re.compile(r"HTTP request to (\S+) is not allowed")


class SandboxError(Exception):
    """A plug-in call that failed, with `kind` from KINDS and a message for the operator."""

    def __init__(self, kind: str, message: str, *, reason: str | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown sandbox error kind {kind!r}")
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        # A short code for why (host_denied: not_granted, private_address, ...; docs/plugins.md).
        self.reason = reason
        # The HTTP requests the call made before it failed (sandbox.net records), set by the host.
        self.http: tuple = ()

    def redacted(self, secrets) -> "SandboxError":
        """The same error with secret values taken out of its message."""
        from common.redact import redact_secrets

        message = redact_secrets(self.message, secrets)
        if message == self.message:
            return self
        error = SandboxError(self.kind, message, reason=self.reason)
        error.http = self.http
        return error


def classify(error_text: str, causes: list[str], *, cancelled: bool, timeout_ms: int, memory_mb: int) -> SandboxError:
    """Map the text of an `extism.Error` (plus the causes Extism logged for the same call) to a SandboxError.

    Extism puts a plug-in's own error_set message in the exception, but for a failed host call or a
    trap only a wasm backtrace; the cause is in its log, which is why `causes` is needed.
    """
    text = error_text.strip()
    if text == "timeout":
        if cancelled:
            return SandboxError("cancelled", "the call was cancelled while it ran")
        return SandboxError("timeout", f"the call did not finish within its {timeout_ms} ms limit")
    if text == "oom":
        return SandboxError("out_of_memory", f"the plug-in needed more than its {memory_mb} MiB of memory")
    if text.startswith("Function not found"):
        return SandboxError("not_found", text)
    if "Hash mismatch" in text:
        return SandboxError("hash_mismatch", text)
    if text.startswith("error while executing") or text.startswith("wasm trap"):
        for cause in causes:
            denied = _HTTP_DENIED.search(cause)
            if denied:
                # Extism's own HTTP (never linked now that exoclaw's replaces it); its URL without query string.
                url = re.sub(r"[?#].*$", "", denied.group(1)).rpartition("@")[2] if "://" not in denied.group(1) else \
                    re.sub(r"[?#].*$", "", re.sub(r"://[^/@]*@", "://", denied.group(1)))
                return SandboxError("host_denied", f"HTTP request to {url} is not allowed (the host is not in the grant's "
                                    "allowed_hosts)", reason="not_granted")
        if causes:
            return SandboxError("trap", "; ".join(causes))
        return SandboxError("trap", "the plug-in trapped (Extism logged no cause)")
    if text.startswith(HOST_DENIED_PREFIX):
        return SandboxError("host_denied", text[len(HOST_DENIED_PREFIX) :].strip())
    return SandboxError("plugin_error", text or "the plug-in failed without a message")
