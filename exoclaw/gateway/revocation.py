"""Closing the connections of tokens that stop being valid.

A token revoked in the admin or with `revoketoken`, disabled, expired, or deleted from the database
by any process must stop working on the connections already open with it, in every gateway process.
So each process checks the token rows behind its open connections every
GATEWAY_TOKEN_RECHECK_SECONDS, one query for all of them, and closes the connections of a token that
no longer authenticates (`gateway.closing`, code 4401, with why).
"""

import asyncio
import logging
import weakref

from channels.db import database_sync_to_async
from django.conf import settings

from exoclaw.models import ApiToken

from .auth import refusal

log = logging.getLogger(__name__)

# Open connections (their Context) in this process, by event loop: each loop has its own watcher.
_open: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, weakref.WeakSet]" = weakref.WeakKeyDictionary()
_watchers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task]" = weakref.WeakKeyDictionary()


def watch(ctx) -> None:
    """Keep checking the token behind this connection while it is open."""
    loop = asyncio.get_running_loop()
    _open.setdefault(loop, weakref.WeakSet()).add(ctx)
    task = _watchers.get(loop)
    if task is None or task.done():
        _watchers[loop] = loop.create_task(_watch_forever(), name="exoclaw-token-watch")


def forget(ctx) -> None:
    connections = _open.get(asyncio.get_running_loop())
    if connections is not None:
        connections.discard(ctx)


@database_sync_to_async
def _rows(ids: set[int]) -> dict[int, ApiToken]:
    return {row.pk: row for row in ApiToken.objects.filter(pk__in=ids)}


async def check_once() -> int:
    """Close the connections whose token no longer authenticates; how many were closed."""
    connections = [c for c in _open.get(asyncio.get_running_loop(), ()) if c.principal and c.principal.token_id]
    if not connections:
        return 0
    rows = await _rows({c.principal.token_id for c in connections})
    closed = 0
    for ctx in connections:
        error = refusal(rows.get(ctx.principal.token_id))
        if error is not None:
            log.warning("closing gateway connection %s of %s: %s", ctx.connection_id, ctx.principal.name, error.reason)
            closed += 1
            await ctx.end(error)
    return closed


async def _watch_forever() -> None:
    while True:
        await asyncio.sleep(settings.GATEWAY_TOKEN_RECHECK_SECONDS)
        try:
            await check_once()
        except Exception:
            log.exception("checking the tokens of open gateway connections failed; trying again")
