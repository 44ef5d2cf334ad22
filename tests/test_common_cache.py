"""common/cache.py: expiry, the generation guard against re-caching what a clear() dropped, the size bound."""

import pytest

from common.cache import TTLCache


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def test_an_entry_is_fresh_until_ttl_seconds_after_it_was_read(clock):
    cache = TTLCache(5.0, clock=clock)
    _, ticket = cache.get("a")
    cache.put("a", 1, ticket)
    clock.now += 4.9
    assert cache.get("a")[0] == 1
    clock.now += 0.1
    assert cache.get("a")[0] is None


def test_an_entry_ages_from_when_its_read_began_not_from_when_it_was_stored(clock):
    cache = TTLCache(5.0, clock=clock)
    _, ticket = cache.get("a")
    clock.now += 3.0  # a slow read
    cache.put("a", 1, ticket)
    clock.now += 2.0
    assert cache.get("a")[0] is None


def test_a_value_derived_from_another_entry_is_as_old_as_that_entry(clock):
    bindings, routes = TTLCache(30.0, clock=clock), TTLCache(30.0, clock=clock)
    bindings.put("all", ["b1"], bindings.get("all")[1])
    clock.now += 20.0
    route_ticket = routes.get("alice")[1]
    _, bindings_ticket = bindings.get("all")
    routes.put("alice", "b1", route_ticket, read_at=bindings_ticket.read_at)
    clock.now += 10.0
    assert routes.get("alice")[0] is None, "the route outlived the bindings it was picked from"


def test_a_load_that_began_before_a_clear_is_not_cached(clock):
    cache = TTLCache(5.0, clock=clock)
    _, ticket = cache.get("a")
    cache.clear()  # a save while the old row was being read
    cache.put("a", "old row", ticket)
    assert cache.get("a")[0] is None
    _, ticket = cache.get("a")
    cache.put("a", "new row", ticket)
    assert cache.get("a")[0] == "new row"


def test_putting_none_forgets_the_key(clock):
    cache = TTLCache(5.0, clock=clock)
    cache.put("a", 1, cache.get("a")[1])
    cache.put("a", None, cache.get("a")[1])  # the row is gone
    assert cache.get("a")[0] is None


def test_a_full_cache_forgets_its_oldest_entry(clock):
    cache = TTLCache(5.0, max_entries=3, clock=clock)
    for key in "abcd":
        cache.put(key, key.upper(), cache.get(key)[1])
    assert [cache.get(key)[0] for key in "abcd"] == [None, "B", "C", "D"]


def test_storing_a_key_again_makes_it_the_newest(clock):
    cache = TTLCache(5.0, max_entries=2, clock=clock)
    cache.put("a", 1, cache.get("a")[1])
    cache.put("b", 2, cache.get("b")[1])
    cache.put("a", 3, cache.get("a")[1])
    cache.put("c", 4, cache.get("c")[1])
    assert [cache.get(key)[0] for key in "abc"] == [3, None, 4]


@pytest.mark.asyncio
async def test_get_or_load_loads_once_and_keeps_no_misses(clock):
    cache = TTLCache(5.0, clock=clock)
    loads = []

    async def load(value):
        loads.append(value)
        return value

    assert await cache.get_or_load("a", lambda: load(1)) == 1
    assert await cache.get_or_load("a", lambda: load(2)) == 1
    assert await cache.get_or_load("b", lambda: load(None)) is None
    assert await cache.get_or_load("b", lambda: load(None)) is None
    assert loads == [1, None, None]


@pytest.mark.asyncio
async def test_get_or_load_does_not_cache_a_load_that_a_clear_overtook(clock):
    cache = TTLCache(5.0, clock=clock)

    async def load_old_row_while_a_save_clears():
        cache.clear()
        return "old row"

    assert await cache.get_or_load("a", load_old_row_while_a_save_clears) == "old row"
    assert cache.get("a")[0] is None, "the load re-cached the row the clear dropped"
