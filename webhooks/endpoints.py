"""Finding a channel endpoint by name, cached: every webhook request needs it before anything else,
and an unauthenticated flood should not cost a database query per request.

An entry lives at most `TTL` seconds, so a change made by another process (a second daphne, the
admin on another host) takes effect within that time; in this process, saving or deleting an
endpoint, a plugin or a grant clears the cache at once (see `apps.py`). Only enabled endpoints are
cached, so names that do not exist cannot grow the cache.
"""

import time
from threading import Lock

from django.db import transaction

from .models import ChannelEndpoint

TTL = 5.0

_cache: dict[str, tuple[float, ChannelEndpoint]] = {}
_lock = Lock()


def clear_cache() -> None:
    with _lock:
        _cache.clear()


def invalidate(**_kwargs) -> None:
    """Signal receiver: an endpoint, plugin or grant changed."""
    clear_cache()
    # Another thread may cache the old row between this save and its commit: clear again then.
    transaction.on_commit(clear_cache)


async def get_endpoint(name: str, clock=time.monotonic) -> ChannelEndpoint | None:
    """The enabled endpoint `name` with its adapter and the adapter's grants, or None."""
    now = clock()
    with _lock:
        hit = _cache.get(name)
    if hit is not None and now - hit[0] < TTL:
        return hit[1]
    endpoint = await (
        ChannelEndpoint.objects.select_related("adapter")
        .prefetch_related("adapter__grants")
        .filter(name=name, enabled=True, adapter__enabled=True)
        .afirst()
    )
    with _lock:
        if endpoint is None:
            _cache.pop(name, None)
        else:
            _cache[name] = (now, endpoint)
    return endpoint
