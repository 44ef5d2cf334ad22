"""Finding an enabled agent by name, cached: every `chat.send` needs its agent before it can answer,
and reading the agents table costs a thread hop and a query (1.2–1.6 ms) on the gateway's hot path.

An entry lives at most `TTL` seconds, so a change made by another process (a second daphne, the
admin or `loadconfig` elsewhere) takes effect within that time; in this process, saving or deleting
an agent clears the cache at once (see `apps.py`). Only enabled agents are cached, so names that do
not exist cannot grow the cache, and a disabled or deleted agent is never served from it here.
"""

from channels.db import database_sync_to_async
from django.db import transaction

from common.cache import TTLCache

from .models import Agent

TTL = 5.0

_cache: TTLCache[str, Agent] = TTLCache(TTL)


def clear_cache() -> None:
    _cache.clear()


def invalidate(**_kwargs) -> None:
    """Signal receiver: an agent changed."""
    clear_cache()
    # Another thread may cache the old row between this save and its commit: clear again then.
    transaction.on_commit(clear_cache)


async def enabled_agent(name: str) -> Agent | None:
    """The enabled agent `name`, or None. Callers must not modify the instance: it is shared."""
    return await _cache.get_or_load(name, lambda: _read(name))


@database_sync_to_async
def _read(name: str) -> Agent | None:
    return Agent.objects.filter(name=name, enabled=True).first()
