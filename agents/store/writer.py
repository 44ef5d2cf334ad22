"""One writer at a time across threads and event loops, waited for without blocking any loop.

An asyncio.Lock belongs to one loop; the embedded store is written from the gateway's loop, from
test loops and from its own thread (sync callers), so its writer lock hands ownership between loops
with call_soon_threadsafe instead.
"""

import asyncio
import collections
import threading


class WriterLock:
    def __init__(self):
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: collections.deque = collections.deque()

    async def __aenter__(self):
        loop = asyncio.get_running_loop()
        with self._mutex:
            if not self._held:
                self._held = True
                return self
            waiter = (loop, loop.create_future())
            self._waiters.append(waiter)
        try:
            await waiter[1]
        except asyncio.CancelledError:
            with self._mutex:
                if waiter in self._waiters:
                    self._waiters.remove(waiter)
                    raise
            # Ownership was already on its way to us: _grant sees the cancelled future and passes it on.
            raise
        return self

    async def __aexit__(self, *exc):
        self._release()

    def _release(self):
        with self._mutex:
            while self._waiters:
                loop, fut = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._grant, fut)
                    return
                except RuntimeError:
                    continue  # that waiter's loop is closed
            self._held = False

    def _grant(self, fut):
        if fut.cancelled():
            self._release()
        else:
            fut.set_result(None)
