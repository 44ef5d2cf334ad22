"""Finding an enabled agent by name, cached: every `chat.send` needs its agent before it can answer,
and reading the agents table costs a thread hop and a query (1.2–1.6 ms) on the gateway's hot path.

An entry lives at most `TTL` seconds, so a change made by another process (a second daphne, the
admin or `loadconfig` elsewhere) takes effect within that time; in this process, saving or deleting
an agent clears the cache at once (see `apps.py`). Only enabled agents are cached, so names that do
not exist cannot grow the cache, and a disabled or deleted agent is never served from it here.
"""

import time
from threading import Lock

from channels.db import database_sync_to_async
from django.db import transaction

from .models import Agent

TTL = 5.0

_cache: dict[str, tuple[float, Agent]] = {}
_generation = 0
_lock = Lock()


def clear_cache() -> None:
    global _generation
    with _lock:
        _cache.clear()
        _generation += 1


def invalidate(**_kwargs) -> None:
    """Signal receiver: an agent changed."""
    clear_cache()
    # Another thread may cache the old row between this save and its commit: clear again then.
    transaction.on_commit(clear_cache)


@database_sync_to_async
def _read(name: str) -> Agent | None:
    return Agent.objects.filter(name=name, enabled=True).first()


async def enabled_agent(name: str, clock=time.monotonic) -> Agent | None:
    """The enabled agent `name`, or None. Callers must not modify the instance: it is shared."""
    now = clock()
    with _lock:
        hit = _cache.get(name)
        generation = _generation
    if hit is not None and now - hit[0] < TTL:
        return hit[1]
    agent = await _read(name)
    with _lock:
        # A change that cleared the cache while we read must not be overwritten by what we read.
        if generation == _generation:
            if agent is None:
                _cache.pop(name, None)
            else:
                _cache[name] = (now, agent)
    return agent
