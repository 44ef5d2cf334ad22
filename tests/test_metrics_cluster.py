"""GET /metrics of a real deployment (daphne and two `runworker agent-runs` over Redis, on PostgreSQL):
a chat run with a tool call and a Telegram webhook event, executed by the workers, show up in the
gateway's scrape, because the processes share PROMETHEUS_MULTIPROC_DIR. The processes log JSON
(LOG_FORMAT=json) naming the run."""

import asyncio
import json
import time

import httpx
import pytest
import redis as redis_lib
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.runtime_cluster import Cluster, rpc
from tests.test_webhook_cluster import SECRET, SEED, post, settled, update
from tests.webhooks_fixtures import BOT_TOKEN

pytestmark = pytest.mark.asyncio


@pytest.fixture
def cluster(tmp_path, redis_url, surreal_ws_url, postgres_url, fake_telegram, monkeypatch):
    monkeypatch.setenv("CLUSTER_TG_SECRET", SECRET)
    monkeypatch.setenv("CLUSTER_TG_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("CLUSTER_TG_API", fake_telegram.url)
    c = Cluster(tmp_path, redis_url, surreal_ws_url, postgres_url, seed=SEED, env={"LOG_FORMAT": "json"})
    c.redis = redis_lib.Redis.from_url(redis_url)
    c.db = postgres_url
    yield c
    c.stop(c.redis)


async def scrape(cluster: Cluster) -> dict[tuple, float]:
    """Every sample of the gateway's /metrics, asked from loopback without a token."""
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://127.0.0.1:{cluster.port}/metrics")
    assert response.status_code == 200, response.text
    return {
        (s.name, *sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def grew(before: dict, after: dict, key: tuple) -> float:
    return after.get(key, 0) - before.get(key, 0)


async def until(condition, what: str, cluster: Cluster, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.pid}\n{p.output()}" for p in [cluster.daphne, *cluster.workers])
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.05)
    return result


RUNS_DONE = ("exoclaw_runs_total", ("agent", "helper"), ("outcome", "done"))
TOOL_OK = ("exoclaw_tool_calls_total", ("outcome", "ok"), ("plugin", "echo"))
LLM_ECHO = ("exoclaw_llm_requests_total", ("provider", "echo"), ("status", "ok"))
WEBHOOK_ACCEPTED = ("exoclaw_webhook_events_total", ("channel", "telegram"), ("status", "accepted"))
FIRST_DELTAS = ("exoclaw_run_first_delta_seconds_count",)
DURATIONS = ("exoclaw_run_duration_seconds_count",)
TOOL_SECONDS = ("exoclaw_tool_call_seconds_count",)
CONNECTIONS = ("exoclaw_gateway_connections",)


async def test_a_scrape_counts_the_runs_tool_calls_llm_requests_and_webhook_events_of_every_process(cluster):
    before = await scrape(cluster)
    assert before.get(CONNECTIONS, 0) == 0, before

    async with connect(cluster.url) as ws:
        await rpc(ws, "chat.send", {"text": '/tool echo.echo {"text": "counted"}', "agent": "helper", "peer": "m"}, 1)
        events, run_id = [], None
        while not events or events[-1]["type"] not in ("done", "error"):
            msg = json.loads(await asyncio.wait_for(ws.recv(), 30))
            if msg.get("id") == 1:
                run_id = msg["result"]["run_id"]
            else:
                events.append(msg["params"])
        assert events[-1]["type"] == "done", events
        during = await scrape(cluster)
        assert during[CONNECTIONS] == 1, "the open WebSocket is one gateway connection"

    response = await post(cluster, update(815200001, "hello metrics"))
    assert response.status_code == 200, response.text
    [event] = await until(lambda: asyncio.to_thread(settled, cluster), "the webhook event to be replied", cluster)
    assert event[1] == "replied", event

    async def counted():
        after = await scrape(cluster)
        done = (
            grew(before, after, RUNS_DONE) == 2  # the chat run and the webhook's run
            and grew(before, after, FIRST_DELTAS) == 2
            and grew(before, after, DURATIONS) == 2
            and after.get(CONNECTIONS) == 0
        )
        return after if done else None

    after = await until(counted, "both runs to be counted and the connection to close", cluster)
    assert grew(before, after, TOOL_OK) == 1
    assert grew(before, after, TOOL_SECONDS) == 1
    assert grew(before, after, LLM_ECHO) == 3  # the chat run's two turns (tool call, answer) and the webhook's one
    assert grew(before, after, WEBHOOK_ACCEPTED) == 1

    # The runs were executed by the workers, not by the daphne that serves /metrics.
    owners = {cluster.owner_pid(cluster.redis, run_id), cluster.owner_pid(cluster.redis, event[2])}
    assert owners <= {w.pid for w in cluster.workers}, (owners, [w.pid for w in cluster.workers])

    # LOG_FORMAT=json: the worker that executed the chat run logged JSON lines naming it.
    worker = next(w for w in cluster.workers if w.pid == cluster.owner_pid(cluster.redis, run_id))
    lines = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    about_run = [line for line in lines if line.get("run_id") == run_id]
    assert about_run, worker.output()
    assert all(line["session_key"] == events[-1]["session_key"] for line in about_run)
    assert any("echo.echo" in line["message"] for line in about_run), about_run
