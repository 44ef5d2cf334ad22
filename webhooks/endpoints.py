"""Finding a channel endpoint by name, cached: every webhook request needs it before anything else,
and an unauthenticated flood should not cost a database query per request.

An entry lives at most `TTL` seconds, so a change made by another process (a second daphne, the
admin on another host) takes effect within that time; in this process, saving or deleting an
endpoint, a plugin, a grant or a grant's HTTP secret clears the cache at once (see `apps.py`). Only
enabled endpoints are cached, so names that do not exist cannot grow the cache.

`serves_channel` answers which channels are platforms' (any endpoint, enabled or not, makes its name
a platform's namespace for the run service), from the endpoints' names read as one cached entry.
"""

from django.db import transaction

from common.cache import TTLCache

from .models import ChannelEndpoint

TTL = 5.0

_cache: TTLCache[str, ChannelEndpoint] = TTLCache(TTL)
_names: TTLCache[str, frozenset[str]] = TTLCache(TTL)


def clear_cache() -> None:
    _cache.clear()
    _names.clear()


def invalidate(**_kwargs) -> None:
    """Signal receiver: an endpoint, plugin, grant or a grant's HTTP secret changed."""
    clear_cache()
    # Another thread may cache the old row between this save and its commit: clear again then.
    transaction.on_commit(clear_cache)


async def get_endpoint(name: str) -> ChannelEndpoint | None:
    """The enabled endpoint `name` with its adapter and the adapter's grants (with their HTTP secrets), or None."""
    return await _cache.get_or_load(name, lambda: _read(name))


async def _read(name: str) -> ChannelEndpoint | None:
    return await (
        ChannelEndpoint.objects.select_related("adapter")
        .prefetch_related("adapter__grants__http_secrets")
        .filter(name=name, enabled=True, adapter__enabled=True)
        .afirst()
    )


async def serves_channel(name: str) -> bool:
    """Whether an endpoint (enabled or not) serves the channel `name`."""
    return name in await _names.get_or_load("all", _read_names)


async def _read_names() -> frozenset[str]:
    return frozenset([name async for name in ChannelEndpoint.objects.values_list("name", flat=True)])
