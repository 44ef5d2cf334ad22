"""Health checks that `status` reports, registered by the parts that own what they check.

    from exoclaw.gateway.health import register_health_check

    async def store_health() -> str:
        await db.query("RETURN 1")
        return "ok"

    register_health_check("store", store_health)

A check returns a short state string; an exception or a timeout is reported as an error state,
never as a crash of `status`.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)

NOT_CHECKED = "not checked"
TIMEOUT = 2.0

_checks: dict[str, Callable[[], Awaitable[str]]] = {}


def register_health_check(name: str, check: Callable[[], Awaitable[str]]) -> None:
    _checks[name] = check


async def run_health_check(name: str) -> str:
    check = _checks.get(name)
    if check is None:
        return NOT_CHECKED
    try:
        return str(await asyncio.wait_for(check(), TIMEOUT))
    except TimeoutError:
        return f"error: no answer within {TIMEOUT:g} s"
    except Exception as e:
        logger.warning("health check %r failed", name, exc_info=True)
        return f"error: {type(e).__name__}"
