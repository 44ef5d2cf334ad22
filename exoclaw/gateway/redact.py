"""Keeping tokens out of logs.

`RedactTokens` is a logging filter installed on the console handler by settings.LOGGING, so it sees
every record that reaches the log, whichever logger emitted it. `AccessLog` replaces daphne's access
log (which writes request paths, query strings included, straight to stdout) with records on the
`exoclaw.access` logger, so they pass through the same filter. Besides token-shaped strings, every
secret value the sandbox has read for a plug-in is redacted (common.redact).
"""

import logging

from daphne.access import AccessLogGenerator

# The patterns and the known secret values (the sandbox's included) live in common.redact.
from common.redact import REDACTED, redact  # noqa: F401  (re-exported)


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
