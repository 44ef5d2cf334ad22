"""Keeping secret values out of text: a process-wide set of known secret values and one function
that replaces them (and token-shaped strings) with `[redacted]`.

The sandbox registers every secret it reads from the environment for a plug-in (`remember`), and
redacts tool results and errors itself; the log filter (exoclaw.gateway.redact) redacts every log
line with the same set. A leaf: the standard library only.
"""

import re
import threading
from urllib.parse import quote, quote_plus

REDACTED = "[redacted]"
# Shorter values are too likely to occur by chance in ordinary text to be replaced everywhere.
MIN_SECRET_LENGTH = 4
_PATTERNS = (
    # ?token=…, &access_token=… in URLs and query strings
    re.compile(r"(?i)((?:^|[?&;\s\"'])(?:access_)?token=)[^&;\s\"']+"),
    # Authorization: Bearer …
    re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"),
    # a raw API token, wherever it appears
    re.compile(r"()exo_[A-Za-z0-9_-]{16,}"),
    # a Telegram bot token in a Bot API URL (/bot123456:AA…/sendMessage), see docs/channels.md
    re.compile(r"(/bot)\d+:[A-Za-z0-9_-]+"),
)

_lock = threading.Lock()
_known: frozenset[str] = frozenset()


def forms(secret: str) -> set[str]:
    """The ways a secret value appears in text: as is and percent-encoded (in a URL or form body)."""
    if len(secret) < MIN_SECRET_LENGTH:
        return set()
    return {secret, quote(secret, safe=""), quote_plus(secret, safe="")}


def remember(*secrets: str):
    """Add secret values to the set every redaction uses, for the rest of the process."""
    global _known
    new = {f for s in secrets if s for f in forms(s)}
    if not new <= _known:
        with _lock:
            _known = _known | new


def known() -> frozenset[str]:
    return _known


def redact_secrets(text: str, secrets=()) -> str:
    """`text` with every known secret value (and each of `secrets`) replaced, longest first."""
    values = _known | {f for s in secrets if s for f in forms(s)}
    for value in sorted(values, key=len, reverse=True):
        if value in text:
            text = text.replace(value, REDACTED)
    return text


def redact_bytes(data: bytes, secrets=()) -> bytes:
    values = _known | {f for s in secrets if s for f in forms(s)}
    for value in sorted(values, key=len, reverse=True):
        raw = value.encode()
        if raw in data:
            data = data.replace(raw, REDACTED.encode())
    return data


def redact(text: str, secrets=()) -> str:
    """`text` with token-shaped strings and every known secret value replaced by [redacted]."""
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    return redact_secrets(text, secrets)
