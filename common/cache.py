"""An in-process cache whose entries expire, and which a change can clear without a slower read
putting back what the change replaced.

The agent lookup, the endpoint lookup and the binding resolver answer hot paths from memory. Each is
cleared when a row changes in this process and relies on `ttl` to see changes made elsewhere. A read
that began before a `clear()` and ends after it holds the old row: storing it would undo the clear
for up to `ttl` seconds. So `get` hands out a `Ticket` naming the cache's generation, and `put` keeps
a value only if no `clear()` ran since its ticket was issued.

Thread-safe: admin saves clear it from other threads than the event loop's. The lock is never held
while loading.
"""

import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from threading import Lock
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


@dataclass(frozen=True)
class Ticket:
    """Given by `get`, passed back to `put`. `read_at` is when the data behind the answer was read:
    now on a miss, the entry's time on a hit (so what is derived from a hit is as old as the hit)."""

    generation: int
    read_at: float


class TTLCache(Generic[K, V]):
    """Entries live `ttl` seconds from when their data was read. With `max_entries`, storing a new
    key into a full cache forgets the oldest entry, for keys that come from outside without bound."""

    def __init__(self, ttl: float, max_entries: int | None = None, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        self._generation = 0
        self._lock = Lock()

    def get(self, key: K) -> tuple[V | None, Ticket]:
        """The value cached for `key` if it is fresh, else None; and the ticket for storing a value."""
        now = self.clock()
        with self._lock:
            entry = self._entries.get(key)
            generation = self._generation
        if entry is not None and now - entry[0] < self.ttl:
            return entry[1], Ticket(generation, entry[0])
        return None, Ticket(generation, now)

    def put(self, key: K, value: V | None, ticket: Ticket, read_at: float | None = None) -> None:
        """Cache `value` (None forgets `key`) unless `clear()` ran since `ticket` was issued.

        `read_at` overrides the ticket's time when the value was made from older data, such as
        another cache's entry."""
        stamp = ticket.read_at if read_at is None else read_at
        with self._lock:
            if ticket.generation != self._generation:
                return
            self._entries.pop(key, None)
            if value is None:
                return
            if self.max_entries is not None and len(self._entries) >= self.max_entries:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = (stamp, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._generation += 1

    async def get_or_load(self, key: K, load: Callable[[], Awaitable[V | None]]) -> V | None:
        """The cached value, or what `load()` returns (cached unless it is None: a miss is not kept,
        so keys that do not exist cannot grow the cache)."""
        value, ticket = self.get(key)
        if value is None:
            value = await load()
            self.put(key, value, ticket)
        return value
