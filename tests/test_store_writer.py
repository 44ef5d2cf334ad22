"""The embedded store's writer lock: one holder across threads and event loops."""

import asyncio
import threading

import pytest

from agents.store.writer import WriterLock


def test_writers_on_different_loops_take_turns():
    lock, inside, overlaps, order = WriterLock(), [0], [], []

    async def writer(name):
        for i in range(20):
            async with lock:
                inside[0] += 1
                overlaps.append(inside[0])
                await asyncio.sleep(0)
                order.append(name)
                inside[0] -= 1

    threads = [threading.Thread(target=asyncio.run, args=(writer(n),)) for n in "abcd"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert max(overlaps) == 1 and len(order) == 80


@pytest.mark.asyncio
async def test_a_cancelled_waiter_passes_the_lock_on():
    lock = WriterLock()
    await lock.__aenter__()
    cancelled = asyncio.create_task(lock.__aenter__())
    patient = asyncio.create_task(lock.__aenter__())
    await asyncio.sleep(0)
    cancelled.cancel()
    await lock.__aexit__(None, None, None)
    await asyncio.wait_for(patient, timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await lock.__aexit__(None, None, None)
    async with lock:
        pass


@pytest.mark.asyncio
async def test_a_waiter_cancelled_after_being_granted_the_lock_releases_it():
    lock = WriterLock()
    await lock.__aenter__()
    waiter = asyncio.create_task(lock.__aenter__())
    await asyncio.sleep(0)
    await lock.__aexit__(None, None, None)  # schedules the grant to the waiter ...
    waiter.cancel()                          # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(lock.__aenter__(), timeout=5)
