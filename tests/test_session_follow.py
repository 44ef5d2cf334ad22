"""`sessions.follow` over the real ASGI stack: a staff user's connection (session cookie, as the admin's
live tail opens it) finds the running run of a session, follows it with `chat.subscribe`, and hears
of the session's next run through `sessions.run`."""

import asyncio
import threading

import pytest
import pytest_asyncio

from tests.fakes import anthropic_server
from tests.fakes.http import Stream, Text
from tests.gateway_support import communicator, connected, session_cookie  # noqa: F401
from tests.runtime_fixtures import Client, make_agent, text_of
from tests.test_runtime_redis import redis_layer, worker  # noqa: F401

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_layer", "process_store")]


@pytest.fixture
def gate():
    g = threading.Event()
    yield g
    g.set()


class Follower(Client):
    """A client that also keeps the `sessions.run` notifications it receives."""

    def __init__(self, communicator):
        super().__init__(communicator)
        self.announced: list[dict] = []

    async def _pump(self, timeout):
        msg = await self.c.receive_json_from(timeout=timeout)
        if msg.get("method") == "sessions.run":
            self.announced.append(msg["params"])
        elif msg.get("method") == "chat.event":
            self.events.setdefault(msg["params"]["run_id"], []).append(msg["params"])
        else:
            self.answers[msg["id"]] = msg

    async def announcement(self, timeout=10) -> dict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not self.announced:
            left = deadline - loop.time()
            assert left > 0, "no sessions.run notification arrived"
            await self._pump(left)
        return self.announced.pop(0)


@pytest_asyncio.fixture
async def staff(session_cookie):  # noqa: F811
    c = await connected(communicator(headers=[("Cookie", await session_cookie(permissions=["view_session"]))]))
    follower = Follower(c)
    yield follower
    await follower.close()


async def test_staff_follow_a_running_session_live_then_hear_of_its_next_run(connect, staff, fake_anthropic, gate, settings):
    settings.ANTHROPIC_API_KEY = "sk-test"
    await make_agent("helper", provider="anthropic", model="m", base_url=fake_anthropic.base_url)
    fake_anthropic.enqueue(Stream(anthropic_server.events(Text("first of several words")), pause_after=4, gate=gate),
                           anthropic_server.message(Text("second answer")))
    chat = await connect(scopes=("chat",))
    sent = await chat.result("chat.send", {"text": "talk", "agent": "helper", "peer": "alice"})
    await chat.until(sent["run_id"], lambda evs: any(e["type"] == "delta" for e in evs))

    followed = await staff.result("sessions.follow", {"session_key": sent["session_key"]})
    assert followed["session"]["key"] == sent["session_key"]
    assert followed["runs"] == [{"run_id": sent["run_id"], "status": "running"}]
    # The session's id works as well as its key.
    by_id = await staff.result("sessions.follow", {"session_key": followed["session"]["id"]})
    assert by_id["runs"] == followed["runs"]

    assert (await staff.result("chat.subscribe", {"run_id": sent["run_id"]}))["status"] == "running"
    await staff.until(sent["run_id"], lambda evs: any(e["type"] == "delta" for e in evs))
    gate.set()
    events = await staff.finished(sent["run_id"])
    assert text_of(events) == "first of several words" and events[-1]["type"] == "done"
    assert (await staff.result("sessions.follow", {"session_key": sent["session_key"]}))["runs"] == []

    second = await chat.result("chat.send", {"text": "again", "agent": "helper", "peer": "alice"})
    notice = await staff.announcement()
    assert notice == {"session_key": sent["session_key"], "session_id": followed["session"]["id"],
                      "run_id": second["run_id"], "agent": "helper", "queued": False}
    await staff.result("chat.subscribe", {"run_id": second["run_id"]})
    assert text_of(await staff.finished(second["run_id"])) == "second answer"


async def a_followed_session(connect, staff, peer: str) -> Client:
    """A chat connection whose first run with the `helper` agent and `peer` has ended; `staff` follows that session."""
    await make_agent("helper")
    chat = await connect(scopes=("chat",))
    first = await chat.result("chat.send", {"text": "hello", "agent": "helper", "peer": peer})
    await chat.finished(first["run_id"])
    await staff.result("sessions.follow", {"session_key": first["session_key"]})
    return chat


async def test_runs_of_other_sessions_are_not_announced_to_a_follower(connect, staff):
    chat = await a_followed_session(connect, staff, "alice")
    other = await chat.result("chat.send", {"text": "elsewhere", "agent": "helper", "peer": "bob"})
    await chat.finished(other["run_id"])
    mine = await chat.result("chat.send", {"text": "here", "agent": "helper", "peer": "alice"})
    assert (await staff.announcement())["run_id"] == mine["run_id"]
    assert staff.announced == []


@pytest.mark.redis
async def test_runs_are_announced_to_followers_over_redis(worker, connect, staff):  # noqa: F811
    chat = await a_followed_session(connect, staff, "dora")
    second = await chat.result("chat.send", {"text": "over redis", "agent": "helper", "peer": "dora"})
    assert (await staff.announcement())["run_id"] == second["run_id"]
    await staff.result("chat.subscribe", {"run_id": second["run_id"]})
    assert text_of(await staff.finished(second["run_id"])) == "over redis"


async def test_follow_needs_sessions_read_and_a_known_session(connect, staff):
    answer = await staff.call("sessions.follow", {"session_key": "agent:helper:-:-:nobody"})
    assert answer["error"]["code"] == -32004 and answer["error"]["data"]["reason"] == "no_session"
    answer = await staff.call("sessions.follow", {})
    assert answer["error"]["code"] == -32602 and answer["error"]["data"]["param"] == "session_key"
    outsider = await connect(scopes=("sessions:write",))
    answer = await outsider.call("sessions.follow", {"session_key": "agent:helper:-:-:nobody"})
    assert answer["error"]["code"] == -32002 and answer["error"]["data"]["required"] == "chat or sessions:read"


async def test_follow_lists_the_queued_and_running_runs_by_key_or_id(process_store, staff):
    key = "agent:helper:-:-:carol"
    session, queued = await process_store.start_run(key, "helper", "first", peer="carol")
    _, done = await process_store.start_run(key, "helper", "second", peer="carol")
    await process_store.update_run(done["id"], status="done", stop_reason="end_turn")
    result = await staff.result("sessions.follow", {"session_key": key})
    assert result["runs"] == [{"run_id": queued["id"], "status": "queued"}]
    assert (await staff.result("sessions.follow", {"session_key": session["id"]}))["runs"] == result["runs"]
    missing = await staff.call("sessions.follow", {"session_key": "no-such-id"})
    assert missing["error"]["data"]["reason"] == "no_session"
