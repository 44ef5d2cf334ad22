"""The run board: the state that every gateway and worker process must agree on.

- each run's status and its event log (`seq` is the log position, so it is gap-free per run and a
  client can replay everything after the last `seq` it saw, through any gateway process);
- one run at a time per session, with a FIFO of waiting runs;
- leases: a worker holds a lease on each run it executes and renews it; a run whose lease lapses
  (the worker died, or no worker ever picked it up) is ended by whoever notices first.

An event appended after a run's terminal event is refused, so exactly one of a run's writers (its
worker, an abort, a reaper) ends it, and a worker that lost its lease learns it on its next append.

Readers of a run's events (`service.events`) read its log from the last `seq` they got and block
until more arrives (`wait_events`), so every client gets each event exactly once and in order,
whether it joined at the start, reconnected, or was slow. Events do not travel as channel-layer
messages: a layer drops messages for a full channel, and a client that reconnects needs what it missed.

`MemoryBoard` serves a single process (the in-memory channel layer); `RedisBoard` keeps the same
state in Redis with one Lua script per operation, so every step is atomic across processes.
`get_board()` picks the one that matches the default channel layer, so `REDIS_URL` is the only switch.
"""

import asyncio
import json
import time
import weakref
from dataclasses import dataclass

from channels.layers import InMemoryChannelLayer, get_channel_layer
from django.conf import settings

TERMINAL = ("done", "error", "aborted")
MAX_WAIT_SECONDS = 5.0  # the longest a follower blocks in one wait_events call
READ_TIMEOUT_SECONDS = MAX_WAIT_SECONDS + 25


class SessionBusy(Exception):
    """The session has a run and the agent's busy policy is `reject`."""


@dataclass(frozen=True)
class Admission:
    start: bool  # True: dispatch now; False: waiting in the session's queue


def make_event(run_id: str, session_key: str, seq: int, body: dict) -> dict:
    """A run event as every reader receives it: the run, its session, its place in the log, its body."""
    return {"run_id": run_id, "session_key": session_key, "seq": seq, **body}


class MemoryBoard:
    # It sees only this process's runs: a run it does not know may be live in another process.
    shared = False

    def __init__(self, events_ttl: float = 86400):
        self.events_ttl = events_ttl
        self.ended: dict[str, float] = {}  # run id -> when it ended, for forgetting it after events_ttl
        self.runs: dict[str, dict] = {}
        self.logs: dict[str, list[dict]] = {}
        self.leases: dict[str, float] = {}
        self.active: dict[str, str] = {}
        self.queues: dict[str, list[str]] = {}
        self.waiters: dict[str, list[asyncio.Future]] = {}

    def _forget_old(self) -> None:
        cutoff = time.monotonic() - self.events_ttl
        for run_id, ended in list(self.ended.items()):
            if ended >= cutoff:
                break  # in order of ending
            del self.ended[run_id]
            self.runs.pop(run_id, None)
            self.logs.pop(run_id, None)

    async def admit(self, run: dict, policy: str, claim_ttl: float) -> Admission:
        self._forget_old()
        key = run["session_key"]
        cur = self.active.get(key)
        self.runs[run["run_id"]] = {"payload": run, "status": "queued", "owner": ""}
        if cur is not None and self.runs[cur]["status"] not in TERMINAL:
            if policy == "reject":
                del self.runs[run["run_id"]]
                raise SessionBusy(key)
            self.queues.setdefault(key, []).append(run["run_id"])
            return Admission(start=False)
        self.active[key] = run["run_id"]
        self.leases[run["run_id"]] = time.monotonic() + claim_ttl
        return Admission(start=True)

    async def release(self, session_key: str, run_id: str, claim_ttl: float) -> dict | None:
        if self.active.get(session_key) != run_id:
            return None
        queue = self.queues.get(session_key, [])
        while queue:
            nxt = queue.pop(0)
            if self.runs[nxt]["status"] == "queued":
                self.active[session_key] = nxt
                self.leases[nxt] = time.monotonic() + claim_ttl
                return self.runs[nxt]["payload"]
        self.active.pop(session_key, None)
        self.queues.pop(session_key, None)
        return None

    async def claim(self, run_id: str, owner: str, ttl: float) -> bool:
        run = self.runs.get(run_id)
        if run is None or run["status"] != "queued":
            return False
        run["status"], run["owner"] = "running", owner
        self.leases[run_id] = time.monotonic() + ttl
        return True

    async def renew(self, run_id: str, ttl: float) -> None:
        if run_id in self.leases:
            self.leases[run_id] = time.monotonic() + ttl

    async def append(self, run_id: str, body: dict, terminal: str = "", only_if: str = "") -> dict | None:
        run = self.runs.get(run_id)
        if run is None or run["status"] in TERMINAL or (only_if and run["status"] != only_if):
            return None
        log = self.logs.setdefault(run_id, [])
        log.append(body)
        if terminal:
            run["status"] = terminal
            self.leases.pop(run_id, None)
            self.ended[run_id] = time.monotonic()
        event = make_event(run_id, run["payload"]["session_key"], len(log), body)
        woken = False
        for w in self.waiters.pop(run_id, []):
            if not w.done():
                w.set_result(None)
                woken = True
        if woken and not terminal:
            # Let the followers send the event now: a run whose LLM answer is already buffered would
            # otherwise append its whole turn before any follower ran (0.7 ms on the first delta).
            # Not after the last event: nothing follows it to overtake, and an abort landing in that
            # turn would end as aborted a run already done.
            await asyncio.sleep(0)
        return event

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> list[dict]:
        """Events after `after_seq`, waiting up to `timeout` seconds for the first one."""
        events = await self.events_after(run_id, after_seq)
        if events:
            return events
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.setdefault(run_id, []).append(waiter)
        try:
            # Not wait_for: it wakes this task one loop turn after the waiter, behind the appender.
            async with asyncio.timeout(timeout):
                await waiter
        except TimeoutError:
            return []
        finally:
            if waiter in self.waiters.get(run_id, []):
                self.waiters[run_id].remove(waiter)
        return await self.events_after(run_id, after_seq)

    async def events_after(self, run_id: str, after_seq: int) -> list[dict]:
        run = self.runs.get(run_id)
        if run is None:
            return []
        key = run["payload"]["session_key"]
        log = self.logs.get(run_id, [])
        return [make_event(run_id, key, i + 1, b) for i, b in enumerate(log) if i + 1 > after_seq]

    async def run(self, run_id: str) -> dict | None:
        """`{"payload", "status", "owner"}` of a run this board knows, else None."""
        run = self.runs.get(run_id)
        return dict(run) if run else None

    async def lapsed(self) -> list[str]:
        now = time.monotonic()
        return [r for r, deadline in self.leases.items() if deadline < now and self.runs[r]["status"] not in TERMINAL]


_ADMIT = """
local p = ARGV[1]
local cur = redis.call('GET', KEYS[1])
if cur then
  local st = redis.call('HGET', p .. 'run:' .. cur, 'status')
  if st == 'queued' or st == 'running' then
    if ARGV[4] == 'reject' then return 'busy' end
    redis.call('HSET', KEYS[3], 'payload', ARGV[3], 'status', 'queued', 'owner', '')
    redis.call('EXPIRE', KEYS[3], ARGV[6])
    redis.call('RPUSH', KEYS[2], ARGV[2])
    return 'queued'
  end
end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('HSET', KEYS[3], 'payload', ARGV[3], 'status', 'queued', 'owner', '')
redis.call('EXPIRE', KEYS[3], ARGV[6])
redis.call('SET', p .. 'lease:' .. ARGV[2], 'unclaimed', 'PX', ARGV[5])
redis.call('SADD', p .. 'leased', ARGV[2])
return 'start'
"""

_RELEASE = """
local p = ARGV[1]
if redis.call('GET', KEYS[1]) ~= ARGV[2] then return false end
while true do
  local nxt = redis.call('LPOP', KEYS[2])
  if not nxt then
    redis.call('DEL', KEYS[1])
    return false
  end
  local h = p .. 'run:' .. nxt
  if redis.call('HGET', h, 'status') == 'queued' then
    redis.call('SET', KEYS[1], nxt)
    redis.call('SET', p .. 'lease:' .. nxt, 'unclaimed', 'PX', ARGV[3])
    redis.call('SADD', p .. 'leased', nxt)
    return redis.call('HGET', h, 'payload')
  end
end
"""

_CLAIM = """
if redis.call('HGET', KEYS[1], 'status') ~= 'queued' then return false end
redis.call('HSET', KEYS[1], 'status', 'running', 'owner', ARGV[1])
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[3])
return cjson.decode(redis.call('HGET', KEYS[1], 'payload')).session_key
"""

_APPEND = """
local st = redis.call('HGET', KEYS[1], 'status')
if not st or st == 'done' or st == 'error' or st == 'aborted' then return 0 end
if ARGV[3] ~= '' and st ~= ARGV[3] then return 0 end
local n = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], '0-' .. n, 'e', ARGV[1])
if n == 1 then redis.call('EXPIRE', KEYS[2], ARGV[4]) end
if ARGV[2] ~= '' then
  redis.call('HSET', KEYS[1], 'status', ARGV[2])
  redis.call('DEL', KEYS[3])
  redis.call('SREM', KEYS[4], ARGV[5])
end
return n
"""


class RedisBoard:
    shared = True

    def __init__(self, url: str, prefix: str, events_ttl: int = 86400, max_connections: int = 2000):
        import redis.asyncio as aioredis

        # Each follower blocked in XREAD holds a connection: the pool bounds the runs one process follows.
        # The read timeout must outlast the longest XREAD block (redis-py 8 defaults to 5 s).
        self.redis = aioredis.from_url(url, max_connections=max_connections, socket_timeout=READ_TIMEOUT_SECONDS)
        self.p = f"{prefix}:runs:"
        self.events_ttl = int(events_ttl)
        self._keys: dict[str, str] = {}  # run id -> session key (never changes)
        self._admit = self.redis.register_script(_ADMIT)
        self._release = self.redis.register_script(_RELEASE)
        self._claim = self.redis.register_script(_CLAIM)
        self._append = self.redis.register_script(_APPEND)

    def _run(self, run_id: str) -> str:
        return f"{self.p}run:{run_id}"

    def _session(self, key: str) -> tuple[str, str]:
        return f"{self.p}session:{key}:active", f"{self.p}session:{key}:queue"

    async def admit(self, run: dict, policy: str, claim_ttl: float) -> Admission:
        active, queue = self._session(run["session_key"])
        result = await self._admit(
            keys=[active, queue, self._run(run["run_id"])],
            args=[self.p, run["run_id"], json.dumps(run), policy, int(claim_ttl * 1000), self.events_ttl],
        )
        if result == b"busy":
            raise SessionBusy(run["session_key"])
        self._remember(run["run_id"], run["session_key"])
        return Admission(start=result == b"start")

    async def release(self, session_key: str, run_id: str, claim_ttl: float) -> dict | None:
        active, queue = self._session(session_key)
        payload = await self._release(keys=[active, queue], args=[self.p, run_id, int(claim_ttl * 1000)])
        return json.loads(payload) if payload else None

    async def claim(self, run_id: str, owner: str, ttl: float) -> bool:
        keys = [self._run(run_id), f"{self.p}lease:{run_id}", f"{self.p}leased"]
        session_key = await self._claim(keys=keys, args=[owner, int(ttl * 1000), run_id])
        if session_key is None:
            return False
        # The run's events carry its session key: knowing it spares the first append a read.
        self._remember(run_id, session_key.decode())
        return True

    async def renew(self, run_id: str, ttl: float) -> None:
        await self.redis.pexpire(f"{self.p}lease:{run_id}", int(ttl * 1000), xx=True)

    async def append(self, run_id: str, body: dict, terminal: str = "", only_if: str = "") -> dict | None:
        keys = [self._run(run_id), f"{self._run(run_id)}:log", f"{self.p}lease:{run_id}", f"{self.p}leased"]
        seq = await self._append(keys=keys, args=[json.dumps(body), terminal, only_if, self.events_ttl, run_id])
        if not seq:
            return None
        return make_event(run_id, await self._session_key(run_id), int(seq), body)

    def _remember(self, run_id: str, session_key: str) -> None:
        if len(self._keys) > 10_000:
            self._keys.clear()
        self._keys[run_id] = session_key

    async def _session_key(self, run_id: str) -> str | None:
        key = self._keys.get(run_id)
        if key is None:
            payload = await self.redis.hget(self._run(run_id), "payload")
            if payload is None:
                return None
            key = json.loads(payload)["session_key"]
            self._remember(run_id, key)
        return key

    def _decode(self, run_id: str, key: str, rows) -> list[dict]:
        return [make_event(run_id, key, int(i.split(b"-")[1]), json.loads(f[b"e"])) for i, f in rows]

    async def events_after(self, run_id: str, after_seq: int) -> list[dict]:
        key = await self._session_key(run_id)
        if key is None:
            return []
        return self._decode(run_id, key, await self.redis.xrange(f"{self._run(run_id)}:log", f"(0-{after_seq}", "+"))

    async def wait_events(self, run_id: str, after_seq: int, timeout: float) -> list[dict]:
        """Events after `after_seq`, blocking in Redis up to `timeout` seconds for the first one."""
        key = await self._session_key(run_id)
        if key is None:
            return []
        reply = await self.redis.xread({f"{self._run(run_id)}:log": f"0-{after_seq}"}, block=int(timeout * 1000))
        return self._decode(run_id, key, reply[0][1]) if reply else []

    async def run(self, run_id: str) -> dict | None:
        h = await self.redis.hgetall(self._run(run_id))
        if not h:
            return None
        return {"payload": json.loads(h[b"payload"]), "status": h[b"status"].decode(), "owner": h[b"owner"].decode()}

    async def lapsed(self) -> list[str]:
        ids = [i.decode() for i in await self.redis.smembers(f"{self.p}leased")]
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for i in ids:
                pipe.exists(f"{self.p}lease:{i}")
            flags = await pipe.execute()
        return [i for i, f in zip(ids, flags) if not f]

    async def aclose(self) -> None:
        await self.redis.aclose()


_boards: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, RedisBoard]" = weakref.WeakKeyDictionary()
_memory_boards: "weakref.WeakKeyDictionary[object, MemoryBoard]" = weakref.WeakKeyDictionary()


def distributed(layer=None) -> bool:
    """Whether runs cross processes: the default channel layer is a shared one (Redis)."""
    return not isinstance(layer or get_channel_layer(), InMemoryChannelLayer)


def get_board() -> MemoryBoard | RedisBoard:
    layer = get_channel_layer()
    if not distributed(layer):
        # One board per in-memory layer: the layer and the board hold the same process's runs.
        board = _memory_boards.get(layer)
        if board is None:
            board = _memory_boards[layer] = MemoryBoard(settings.AGENT_RUN_EVENTS_TTL)
        return board
    loop = asyncio.get_running_loop()
    board = _boards.get(loop)
    if board is None:
        # redis.asyncio connections belong to the loop that opened them.
        host = layer.hosts[0]
        board = _boards[loop] = RedisBoard(
            host["address"], layer.prefix, settings.AGENT_RUN_EVENTS_TTL, host.get("max_connections", 2000)
        )
    return board


async def publish(run_id: str, body: dict, *, terminal: str = "", only_if: str = "") -> dict | None:
    """Append an event to the run's log, where its readers pick it up; None if the run had already ended."""
    return await get_board().append(run_id, body, terminal=terminal, only_if=only_if)
