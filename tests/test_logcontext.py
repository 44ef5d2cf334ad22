"""LOG_FORMAT=json: one JSON object per line, naming the run a line is about, with tokens still redacted."""

import asyncio
import io
import json
import logging

from common.logcontext import JsonFormatter, RunContextFilter, log_context
from exoclaw.gateway.redact import RedactTokens


def json_logger(name: str) -> tuple[logging.Logger, io.StringIO]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RedactTokens())  # in the order settings.LOGGING installs them
    handler.addFilter(RunContextFilter())
    logger = logging.getLogger(name)
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.INFO)
    return logger, out


def lines(out: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_lines_logged_by_a_run_task_name_its_run_and_others_do_not():
    logger, out = json_logger("tests.logcontext.runs")

    async def run(n: int):
        log_context(run_id=f"run{n}", session_key=f"agent:a:web:-:p{n}")
        await asyncio.sleep(0)
        logger.info("working on %s", n)

    async def main():
        await asyncio.gather(run(1), run(2))
        logger.info("between runs")

    asyncio.run(main())
    by_message = {line["message"]: line for line in lines(out)}
    assert by_message["working on 1"]["run_id"] == "run1"
    assert by_message["working on 1"]["session_key"] == "agent:a:web:-:p1"
    assert by_message["working on 2"]["run_id"] == "run2"
    assert "run_id" not in by_message["between runs"] and "session_key" not in by_message["between runs"]
    assert set(by_message["between runs"]) == {"time", "level", "logger", "message"}
    assert by_message["between runs"]["level"] == "INFO" and by_message["between runs"]["logger"] == "tests.logcontext.runs"


def test_a_line_may_name_its_run_itself():
    logger, out = json_logger("tests.logcontext.extra")
    logger.info("accepted", extra={"run_id": "r9", "session_key": "k9"})
    [line] = lines(out)
    assert (line["run_id"], line["session_key"]) == ("r9", "k9")


def test_exceptions_are_one_json_line_with_tokens_redacted():
    logger, out = json_logger("tests.logcontext.exc")
    try:
        raise RuntimeError("refused exo_abcdefghijklmnopqrstuvwxyz012345")
    except RuntimeError:
        logger.exception("failed with token exo_abcdefghijklmnopqrstuvwxyz012345")
    [line] = lines(out)
    assert "exo_abcdefghijklmnop" not in out.getvalue()
    assert "[redacted]" in line["message"] and "RuntimeError" in line["exception"]
    assert "[redacted]" in line["exception"]
