"""Keeping tokens out of logs.

`RedactTokens` is a logging filter installed on the console handler by settings.LOGGING, so it sees
every record that reaches the log, whichever logger emitted it. `AccessLog` replaces daphne's access
log (which writes request paths, query strings included, straight to stdout) with records on the
`exoclaw.access` logger, so they pass through the same filter.
"""

import logging
import re

from daphne.access import AccessLogGenerator

REDACTED = "[redacted]"
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


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
    for secret in secrets:
        if secret:
            text = text.replace(secret, REDACTED)
    return text


class RedactTokens(logging.Filter):
    """Rewrites each record's message (and traceback text) with tokens replaced by [redacted]."""

    def filter(self, record: logging.LogRecord) -> bool:
        from django.conf import settings

        secrets = (getattr(settings, "EXOCLAW_TOKEN", ""),)
        message = record.getMessage()
        cleaned = redact(message, secrets)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, secrets)
        return True


class AccessLog(AccessLogGenerator):
    """daphne's access log lines, written as INFO records on the `exoclaw.access` logger."""

    logger = logging.getLogger("exoclaw.access")

    def __init__(self):
        super().__init__(stream=None)

    def write_entry(self, host, date, request, status=None, length=None, ident=None, user=None):
        self.logger.info('%s "%s" %s %s', host, request, status or "-", length or "-")
