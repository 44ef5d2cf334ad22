import asyncio
import time
import uuid

import pytest
import pytest_asyncio

from agents.runtime.board import MemoryBoard, RedisBoard, SessionBusy

pytestmark = pytest.mark.asyncio


@pytest_asyncio.fixture(params=["memory", "redis"])
async def board(request):
    if request.param == "memory":
        yield MemoryBoard()
        return
    url = request.getfixturevalue("redis_url")
    b = RedisBoard(url, f"test-{uuid.uuid4().hex}")
    yield b
    keys = [k async for k in b.redis.scan_iter(match=f"{b.p}*")]
    if keys:
        await b.redis.delete(*keys)
    await b.aclose()


def run(run_id, key="agent:a:-:-:-"):
    return {"run_id": run_id, "session_key": key, "text": "hi"}


async def test_seq_is_gap_free_and_replay_returns_what_came_after(board):
    await board.admit(run("r1"), "queue", 30)
    assert await board.claim("r1", "w1", 30)
    seqs = [(await board.append("r1", {"type": "delta", "text": str(i)}))["seq"] for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    replay = await board.events_after("r1", 3)
    assert [(e["seq"], e["text"]) for e in replay] == [(4, "3"), (5, "4")]
    assert replay[0]["session_key"] == "agent:a:-:-:-" and replay[0]["run_id"] == "r1"


async def test_appends_that_wake_a_follower_still_answer_with_their_own_seq():
    board = MemoryBoard()
    await board.admit(run("r1"), "queue", 30)
    await board.claim("r1", "w1", 30)
    follower = asyncio.ensure_future(board.wait_events("r1", 0, 5))
    await asyncio.sleep(0)  # one loop turn: the follower registers its waiter
    assert board.waiters.get("r1"), "the follower should be waiting before the appends"
    # Tool calls of one turn emit at once, and an append that wakes a follower lets it run before
    # returning: each append must still answer with the seq its own event got.
    appended = await asyncio.gather(*(board.append("r1", {"type": "tool_call", "n": i}) for i in range(4)))
    assert [(e["seq"], e["n"]) for e in appended] == [(1, 0), (2, 1), (3, 2), (4, 3)]
    assert [e["seq"] for e in await follower][0] == 1


async def test_events_carry_the_session_key_in_every_process_that_touches_the_run(redis_url):
    prefix = f"test-{uuid.uuid4().hex}"
    gateway, worker, follower = (RedisBoard(redis_url, prefix) for _ in range(3))
    try:
        await gateway.admit(run("r1", key="agent:a:-:-:k"), "queue", 30)
        assert await worker.claim("r1", "w1", 30)
        assert not await worker.claim("r1", "w2", 30)
        assert not await worker.claim("never-admitted", "w1", 30)
        assert (await worker.append("r1", {"type": "delta", "text": "x"}))["session_key"] == "agent:a:-:-:k"
        assert [e["session_key"] for e in await follower.events_after("r1", 0)] == ["agent:a:-:-:k"]
    finally:
        keys = [k async for k in gateway.redis.scan_iter(match=f"{gateway.p}*")]
        if keys:
            await gateway.redis.delete(*keys)
        for b in (gateway, worker, follower):
            await b.aclose()


async def test_nothing_is_appended_after_the_terminal_event(board):
    await board.admit(run("r1"), "queue", 30)
    await board.claim("r1", "w1", 30)
    assert (await board.append("r1", {"type": "error"}, terminal="error"))["seq"] == 1
    assert await board.append("r1", {"type": "delta", "text": "late"}) is None
    assert (await board.run("r1"))["status"] == "error"


async def test_second_run_waits_in_fifo_and_starts_when_the_first_is_released(board):
    assert (await board.admit(run("r1"), "queue", 30)).start
    assert not (await board.admit(run("r2"), "queue", 30)).start
    assert not (await board.admit(run("r3"), "queue", 30)).start
    assert (await board.release("agent:a:-:-:-", "r1", 30))["run_id"] == "r2"
    assert (await board.release("agent:a:-:-:-", "r2", 30))["run_id"] == "r3"
    assert await board.release("agent:a:-:-:-", "r3", 30) is None
    assert (await board.admit(run("r4"), "queue", 30)).start


async def test_reject_policy_refuses_a_busy_session_but_not_another(board):
    await board.admit(run("r1"), "reject", 30)
    with pytest.raises(SessionBusy):
        await board.admit(run("r2"), "reject", 30)
    assert (await board.admit(run("r3", key="agent:a:-:-:other"), "reject", 30)).start
    assert await board.run("r2") is None


async def test_an_aborted_queued_run_is_skipped_on_release(board):
    await board.admit(run("r1"), "queue", 30)
    await board.admit(run("r2"), "queue", 30)
    await board.admit(run("r3"), "queue", 30)
    assert await board.append("r2", {"type": "done", "stop_reason": "aborted"}, terminal="aborted", only_if="queued")
    assert (await board.release("agent:a:-:-:-", "r1", 30))["run_id"] == "r3"


async def test_a_finished_active_run_does_not_keep_the_session_busy(board):
    await board.admit(run("r1"), "reject", 30)
    await board.claim("r1", "w", 30)
    await board.append("r1", {"type": "error"}, terminal="error")
    assert (await board.admit(run("r2"), "reject", 30)).start


async def test_a_lapsed_lease_is_reported_and_a_renewed_one_is_not(board):
    await board.admit(run("r1"), "queue", 30)
    await board.admit(run("r2", key="k2"), "queue", 30)
    await board.claim("r1", "w1", 0.001)
    await board.claim("r2", "w2", 30)
    await board.renew("r2", 30)
    deadline = time.monotonic() + 5
    while not await board.lapsed() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    assert await board.lapsed() == ["r1"]
    await board.append("r1", {"type": "error"}, terminal="error")
    assert await board.lapsed() == []


async def test_claim_fails_for_a_run_ended_before_a_worker_took_it(board):
    await board.admit(run("r1"), "queue", 30)
    await board.append("r1", {"type": "done", "stop_reason": "aborted"}, terminal="aborted", only_if="queued")
    assert not await board.claim("r1", "w1", 30)


async def test_a_waiting_follower_wakes_for_the_next_event_and_times_out_without_one(board):
    await board.admit(run("r1"), "queue", 30)
    await board.claim("r1", "w1", 30)
    await board.append("r1", {"type": "delta", "text": "a"})
    assert [e["seq"] for e in await board.wait_events("r1", 0, 1)] == [1]
    assert await board.wait_events("r1", 1, 0.05) == []
    waiting = asyncio.ensure_future(board.wait_events("r1", 1, 10))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    await board.append("r1", {"type": "delta", "text": "b"})
    events = await asyncio.wait_for(waiting, 5)
    assert [(e["seq"], e["text"]) for e in events] == [(2, "b")]


async def test_the_memory_board_forgets_runs_that_ended_longer_ago_than_the_events_ttl():
    board = MemoryBoard(events_ttl=0)
    await board.admit(run("r1"), "queue", 30)
    await board.claim("r1", "w1", 30)
    await board.append("r1", {"type": "done"}, terminal="done")
    await board.release("agent:a:-:-:-", "r1", 30)
    await board.admit(run("r2"), "queue", 30)
    assert await board.run("r1") is None and await board.events_after("r1", 0) == []
    assert (await board.run("r2"))["status"] == "queued"
