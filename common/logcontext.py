"""Which run a log line is about, and the JSON log format (`LOG_FORMAT=json`).

The runtime marks the task executing a run once:

    from common.logcontext import log_context
    log_context(run_id="01J…", session_key="agent:helper:web:-:alice")

and every line logged from that task (and the tasks it starts) carries `run_id` and `session_key`,
whichever module logs it. A line may also name them itself: `log.info("…", extra={"run_id": …})`.
"""

import contextvars
import json
import logging
import time

FIELDS = ("run_id", "session_key")

_context: contextvars.ContextVar[dict] = contextvars.ContextVar("exoclaw_log_context", default={})


def log_context(**fields: str) -> None:
    """Name the run (`run_id`, `session_key`) that the current task's log lines are about."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if k in FIELDS and v}})


class RunContextFilter(logging.Filter):
    """Puts the current task's `run_id` and `session_key` on each record that does not name its own."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if getattr(record, key, None) is None:
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, and `run_id`,
    `session_key` and `exception` when they apply."""

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value
        # exc_text first: a filter (the token redaction) may have rewritten it.
        if record.exc_text:
            line["exception"] = record.exc_text
        elif record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)
