"""The distributed mode in one test process: the gateway and a Channels `Worker` (what `runworker
agent-runs` runs) talking over the real Redis, with the run board in Redis too."""

import asyncio
import uuid

import pytest
import pytest_asyncio
from channels.layers import channel_layers, get_channel_layer
from channels.routing import ChannelNameRouter
from channels.worker import Worker

from agents.runtime.board import distributed, get_board
from agents.runtime.worker import RUNS_CHANNEL
from agents.store import get_store
from exoclaw.urls_ws import channel_routes
from tests.runtime_fixtures import assert_gap_free, echo_plugin, make_agent, spin_plugin, text_of

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("process_store")]


@pytest.fixture
def redis_layer(redis_url, settings):
    prefix = f"exoclaw-test-{uuid.uuid4().hex[:12]}"
    settings.CHANNEL_LAYERS = {
        "default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {"hosts": [redis_url], "prefix": prefix}}
    }
    channel_layers.backends.clear()
    yield prefix
    channel_layers.backends.clear()


@pytest_asyncio.fixture
async def worker(redis_layer):
    layer = get_channel_layer()
    assert distributed(layer)
    task = asyncio.create_task(Worker(ChannelNameRouter(channel_routes), [RUNS_CHANNEL], layer).arun())
    yield task
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    board = get_board()
    keys = [k async for k in board.redis.scan_iter(match=f"{redis_layer}*")]
    if keys:
        await board.redis.delete(*keys)


async def test_a_tool_run_goes_through_a_worker_over_redis(connect, worker):
    await echo_plugin()
    await make_agent("helper", tools=["echo"])
    client = await connect()
    sent = await client.result("chat.send", {"text": '/tool echo.echo {"text": "via redis"}', "agent": "helper"})
    events = await client.finished(sent["run_id"])
    assert_gap_free(events)
    assert text_of(events) == "Tool echo.echo returned: via redis"
    run = await get_board().run(sent["run_id"])
    assert run["status"] == "done" and run["owner"].count(":") == 2


async def test_abort_and_subscribe_work_across_connections_over_redis(connect, worker):
    await spin_plugin()
    await make_agent("helper", tools=["spin"])
    starter, watcher = await connect(), await connect()
    sent = await starter.result("chat.send", {"text": "/tool spin.spin {}", "agent": "helper"})
    await starter.until(sent["run_id"], lambda evs: any(e["type"] == "tool_call" for e in evs))
    assert (await watcher.result("chat.subscribe", {"run_id": sent["run_id"]}))["status"] == "running"
    await watcher.result("chat.abort", {"run_id": sent["run_id"]})
    seen_by_starter = await starter.finished(sent["run_id"], timeout=10)
    seen_by_watcher = await watcher.finished(sent["run_id"], timeout=10)
    assert seen_by_starter == seen_by_watcher
    assert_gap_free(seen_by_watcher)
    assert seen_by_watcher[-1]["stop_reason"] == "aborted"


async def test_a_run_no_worker_picks_up_ends_with_an_error_that_says_so(connect, redis_layer, settings):
    settings.AGENT_RUN_CLAIM_SECONDS = 0.3
    settings.AGENT_RUN_LEASE_SECONDS = 0.4
    await make_agent("helper")
    client = await connect()
    sent = await client.result("chat.send", {"text": "anyone there?", "agent": "helper"})
    events = await client.finished(sent["run_id"], timeout=10)
    assert [(e["type"], e["reason"]) for e in events] == [("error", "no_worker")]
    assert "runworker agent-runs" in events[0]["message"]
    run = await get_store().get_run(sent["run_id"])
    assert run["status"] == "error" and run["error"].startswith("no_worker")
    history = (await client.result("sessions.history", {"session_key": sent["session_key"]}))["messages"]
    assert history[-1]["interrupted"].startswith("error: no_worker")
    board = get_board()
    await board.redis.delete(*[k async for k in board.redis.scan_iter(match=f"{redis_layer}*")])
