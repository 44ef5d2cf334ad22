"""The webhook path in the distributed deployment: a signed Telegram update posted to a real daphne,
its run executed by one of two `runworker agent-runs` processes over the real Redis (all on one
PostgreSQL database), the reply sent from daphne to a fake Telegram Bot API on loopback."""

import asyncio
import json
import sys
import time

import httpx
import psycopg
import pytest
import redis as redis_lib
from websockets.asyncio.client import connect

from tests.runtime_cluster import Cluster, Proc, free_port, rpc
from tests.webhooks_fixtures import BOT_TOKEN, PLUGINS

pytestmark = pytest.mark.asyncio

SECRET = "cluster-webhook-secret"
CHAT_ID = 777002
SESSION_KEY = f"agent:helper:telegram:exoclaw_bot:{CHAT_ID}"

# Appended to the cluster's seed, which already made the echo agent "helper".
SEED = f"""
from routing.models import Binding
from webhooks.models import ChannelEndpoint
telegram = Plugin(name="telegram", wasm_path="{PLUGINS / 'telegram.wasm'}", abi=Plugin.Abi.CHANNEL_ADAPTER)
telegram.full_clean(); telegram.save()
Binding.objects.create(agent=Agent.objects.get(name="helper"), channel="telegram")
endpoint = ChannelEndpoint(name="telegram", adapter=telegram, auth=ChannelEndpoint.Auth.TELEGRAM,
                           secret_env="CLUSTER_TG_SECRET", account="exoclaw_bot", sender_policy="open",
                           api_base_url=__import__("os").environ["CLUSTER_TG_API"], token_env="CLUSTER_TG_TOKEN")
endpoint.full_clean(); endpoint.save()
"""


@pytest.fixture
def cluster(tmp_path, redis_url, surreal_ws_url, postgres_url, fake_telegram, monkeypatch):
    # The cluster's processes inherit this environment: the secret and token are read from it
    # by name, as the endpoint's secret_env and token_env say.
    monkeypatch.setenv("CLUSTER_TG_SECRET", SECRET)
    monkeypatch.setenv("CLUSTER_TG_TOKEN", BOT_TOKEN)
    monkeypatch.setenv("CLUSTER_TG_API", fake_telegram.url)
    # Short leases, so that taking over from a killed daphne happens within the test's patience.
    monkeypatch.setenv("WEBHOOK_LEASE_SECONDS", "1.5")
    c = Cluster(tmp_path, redis_url, surreal_ws_url, postgres_url, seed=SEED)
    c.redis = redis_lib.Redis.from_url(redis_url)
    c.db = postgres_url
    yield c
    c.stop(c.redis)


def update(update_id: int, text: str) -> dict:
    return {
        "update_id": update_id,
        "message": {
            "message_id": 42,
            "from": {"id": CHAT_ID, "is_bot": False, "first_name": "Ada"},
            "chat": {"id": CHAT_ID, "first_name": "Ada", "type": "private"},
            "date": 1764072000,
            "text": text,
        },
    }


async def post(cluster: Cluster, body: dict) -> httpx.Response:
    async with httpx.AsyncClient() as client:
        return await client.post(
            f"http://127.0.0.1:{cluster.port}/hooks/telegram/",
            content=json.dumps(body),
            headers={"Content-Type": "application/json", "X-Telegram-Bot-Api-Secret-Token": SECRET},
        )


def inbound_events(cluster: Cluster) -> list[tuple]:
    # Read straight from the deployment's PostgreSQL database: the test process's Django database is another.
    with psycopg.connect(cluster.db) as db:
        return db.execute(
            "SELECT update_id, status, run_id, session_key, delivery_attempts FROM webhooks_inboundevent"
        ).fetchall()


def settled(cluster: Cluster) -> list[tuple]:
    """The inbound events once none is still running (empty until then)."""
    rows = inbound_events(cluster)
    return rows if all(row[1] != "accepted" for row in rows) else []


async def until(condition, what: str, cluster: Cluster, timeout: float = 20):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {p.pid}\n{p.output()}" for p in [cluster.daphne, *cluster.workers])
            pytest.fail(f"timed out waiting for {what}\n{logs}")
        await asyncio.sleep(0.05)
    return result


async def history(cluster: Cluster) -> list[dict]:
    async with connect(cluster.url) as ws:
        await rpc(ws, "sessions.history", {"session_key": SESSION_KEY}, 1)
        reply = json.loads(await asyncio.wait_for(ws.recv(), 10))
    assert "result" in reply, reply
    return reply["result"]["messages"]


async def test_a_telegram_update_is_run_by_a_worker_and_answered_once_even_when_telegram_sends_it_twice(
    cluster, fake_telegram
):
    response = await post(cluster, update(815100001, "hello from the cluster"))
    assert response.status_code == 200, response.text
    assert response.json()["ok"] is True and "event" in response.json(), response.text

    [event] = await until(lambda: settled(cluster), "the inbound event to finish", cluster)
    update_id, status, run_id, session_key, attempts = event
    assert (update_id, status, session_key, attempts) == ("815100001", "replied", SESSION_KEY, 1), event
    assert fake_telegram.sent_messages() == [
        {
            "chat_id": CHAT_ID,
            "text": "hello from the cluster",
            "reply_parameters": {"message_id": 42, "allow_sending_without_reply": True},
        }
    ]
    # The board records which runworker claimed the run; daphne never claims in a distributed deployment.
    owner = cluster.owner_pid(cluster.redis, run_id)
    assert owner in {w.pid for w in cluster.workers}, (
        f"run {run_id} was owned by {owner}, workers are {[w.pid for w in cluster.workers]}, "
        f"daphne is {cluster.daphne.pid}"
    )
    messages = await history(cluster)
    assert [(m["role"], m["content"][0]["text"]) for m in messages] == [
        ("user", "hello from the cluster"),
        ("assistant", "hello from the cluster"),
    ], messages

    # Telegram retries with the same update_id when it missed our answer: the ingress sees the
    # stored event and starts nothing, so no run and no reply can follow this response.
    again = await post(cluster, update(815100001, "hello from the cluster"))
    assert again.json() == {"ok": True, "duplicate": True}, again.text
    # A reply to the duplicate would be sent in the background, so wait for a later message's reply
    # before counting: by then a stray second run or reply would have shown up.
    assert (await post(cluster, update(815100002, "and again"))).status_code == 200
    events = await until(lambda: settled(cluster), "the second update's event to finish", cluster)
    assert sorted((e[0], e[1]) for e in events) == [("815100001", "replied"), ("815100002", "replied")], events
    assert [m["text"] for m in fake_telegram.sent_messages()] == ["hello from the cluster", "and again"]
    assert [(m["role"], m["content"][0]["text"]) for m in await history(cluster)] == [
        ("user", "hello from the cluster"),
        ("assistant", "hello from the cluster"),
        ("user", "and again"),
        ("assistant", "and again"),
    ]


def runs_on_the_board(cluster: Cluster) -> list[str]:
    keys = [k.decode() for k in cluster.redis.scan_iter(match=f"{cluster.prefix}:runs:run:*")]
    return [k.rsplit(":", 1)[1] for k in keys if not k.endswith(":log")]


async def test_when_the_daphne_that_accepted_an_update_dies_mid_run_another_delivers_the_reply(cluster, fake_telegram):
    # The echo agent calls the spin tool, which runs on a worker until its 4 s timeout: time to kill daphne.
    response = await post(cluster, update(815100003, "/tool spin {}"))
    assert response.status_code == 200, response.text
    [run_id] = await until(lambda: runs_on_the_board(cluster), "the run to reach the board", cluster)
    # Killed once a worker has the run: a daphne killed between admitting a run and dispatching it
    # leaves it queued until the claim deadline ends it as no_worker, a different path from this one.
    await until(lambda: cluster.owner_pid(cluster.redis, run_id), "a worker to claim the run", cluster)
    cluster.daphne.kill()
    port = free_port()
    second = Proc([sys.executable, "manage.py", "serve", "--bind", f"127.0.0.1:{port}"], cluster.env,
                  f"Listening on TCP address 127.0.0.1:{port}")
    try:
        second.wait_ready("the second daphne")
        cluster.daphne, cluster.port = second, port  # for the helpers and the cluster's teardown
        # Any request to /hooks/ starts the new process's lease keeper; this one is refused.
        async with httpx.AsyncClient() as client:
            refused = await client.post(f"http://127.0.0.1:{port}/hooks/telegram/", content=b"{}",
                                        headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"})
        assert refused.status_code == 401
        [event] = await until(lambda: settled(cluster), "the taken-over event to finish", cluster, timeout=30)
    finally:
        second.stop()
    update_id, status, event_run, session_key, attempts = event
    assert (update_id, status, event_run, attempts) == ("815100003", "replied", run_id, 1), event
    [sent] = fake_telegram.sent_messages()
    assert sent["chat_id"] == CHAT_ID and "spin" in sent["text"], sent
    assert runs_on_the_board(cluster) == [run_id], "the same run was followed, not a second one started"
