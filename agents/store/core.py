"""The session store: sessions, messages, runs and tool calls in SurrealDB, and the only code that
speaks SurrealQL.

The SDK's server connection belongs to the event loop that opened it, while the store is used from
the gateway's loop, from test loops and from sync code (admin views, management commands). So each
Store runs its connection on a dedicated event-loop thread: `await store.method(...)` hops there and
back (the caller's loop never waits on the engine), and `store.sync.method(...)` blocks the calling
thread. The hot path of an embedded store skips the hop (see `api`). Every write has committed
(fsync'd on the embedded engine) when its call returns.
"""

import asyncio
import atexit
import contextlib
import datetime as dt
import functools
import logging
import os
import random
import threading
import time
import weakref

import websockets
from surrealdb import AsyncSurreal, RecordID

from . import shapes
from .errors import (
    DuplicateRun,
    InvalidInput,
    RunNotFound,
    SchemaTooNew,
    SessionNotFound,
    StoreError,
)
from .lock import EmbeddedLock
from .schema import SCHEMA, SCHEMA_VERSION
from .writer import WriterLock

log = logging.getLogger(__name__)

EMBEDDED_SCHEMES = ("mem", "memory", "surrealkv", "surrealkv+versioned", "file")
ON_DISK_SCHEMES = ("surrealkv", "surrealkv+versioned", "file")
RETRIES = 8
SEARCH_CANDIDATES = 5000
SORTS = {
    "-updated": "updated DESC",
    "updated": "updated ASC",
    "-created": "created DESC",
    "created": "created ASC",
    "-message_count": "message_count DESC, updated DESC",
    "message_count": "message_count ASC, updated DESC",
    "agent": "agent ASC, updated DESC",
    "-agent": "agent DESC, updated DESC",
}
SESSION_STATUSES = ("idle",) + shapes.RUN_STATUSES
_THROWN = {"session_not_found": SessionNotFound, "run_not_found": RunNotFound}


def _session(session_id: str) -> RecordID:
    return RecordID("session", str(session_id))


def _run(run_id: str) -> RecordID:
    return RecordID("run", str(run_id))


def redact(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


class _LoopThread:
    def __init__(self, name: str):
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def submit(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


def api(write: bool, direct: bool = False):
    """Mark a coroutine method as public: callers on any loop await it.

    It runs on the store's loop, except `direct` methods of an open embedded store, which run on the
    caller's loop: the embedded engine is not tied to a loop (a server connection is), and these
    small reads and writes are the hot path (an agent's context load and appends), where the hop to
    the store's thread and back cost more than the query under load.

    Writes are shielded: a caller cancelled mid-write (an aborted run) must not abort the write
    that persists what was said so far.
    """

    def decorate(fn):
        @functools.wraps(fn)
        async def call(self, *args, **kwargs):
            if direct and self.embedded and self._ready and not self._closed:
                work = self._call(fn, args, kwargs)
                return await (asyncio.shield(asyncio.ensure_future(work)) if write else work)
            fut = asyncio.wrap_future(self._submit(fn, args, kwargs))
            return await (asyncio.shield(fut) if write else fut)

        call.on_store_loop = fn
        fn.writes = write
        return call

    return decorate


class SyncStore:
    """`store.sync.method(...)`: the blocking twin of every public `await store.method(...)`."""

    def __init__(self, store: "Store"):
        self._store = store

    def __getattr__(self, name):
        fn = getattr(getattr(type(self._store), name, None), "on_store_loop", None)
        if fn is None:
            raise AttributeError(f"Store has no method {name!r}")

        def call(*args, **kwargs):
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                return self._store._submit(fn, args, kwargs).result()
            raise StoreError(f"store.sync.{name}() would block this event loop; use `await store.{name}(...)`")

        return call


_open_stores: "weakref.WeakSet[Store]" = weakref.WeakSet()


@atexit.register
def _close_open_stores():
    # An embedded engine still open when the interpreter finalizes aborts the process (a Rust panic
    # that cannot unwind, exit status 134), so close every store first: atexit runs while daemon
    # threads are still alive.
    for store in list(_open_stores):
        try:
            store.close()
        except Exception:
            log.exception("closing %r at exit", store)


def _session_fields(key: str, agent: str, channel: str, account: str, peer: str, guild: str, team: str,
                    owner: str) -> dict:
    if not key or not agent:
        raise InvalidInput("a session needs a key and an agent")
    return {"key": key, "agent": agent, "channel": channel, "account": account, "peer": peer, "guild": guild,
            "team": team, "owner": owner}


class Store:
    def __init__(self, url: str, namespace: str = "exoclaw", database: str = "exoclaw",
                 username: str = "", password: str = "", sync_writes: bool = True):
        self.url = url
        self.scheme = url.partition("://")[0].lower()
        self.embedded = self.scheme in EMBEDDED_SCHEMES
        self._ns, self._db_name = namespace, database
        self._username, self._password = username, password
        self._sync_writes = sync_writes
        self._db = None
        # Connected and migrated: until then every call waits in `_open`, so none runs against a
        # database whose schema is still being applied.
        self._ready = False
        self._lock: EmbeddedLock | None = None
        self._open_lock: asyncio.Lock | None = None
        self._writer = WriterLock()
        self._session_locks: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._closed = False
        self.migration: dict | None = None
        self._thread = _LoopThread(f"exoclaw-store {redact(url)}")
        self.sync = SyncStore(self)
        _open_stores.add(self)

    def __repr__(self):
        return f"<Store {redact(self.url)}>"

    # --- plumbing -------------------------------------------------------------------------------

    def _submit(self, fn, args, kwargs):
        if self._closed:
            raise StoreError("the session store is closed")
        return self._thread.submit(self._call(fn, args, kwargs))

    async def _call(self, fn, args, kwargs):
        if not self._ready:
            await self._open()
        if not (self.embedded and getattr(fn, "writes", False)):
            return await fn(self, *args, **kwargs)
        # The embedded engines (surrealdb-core 2.3.10, SurrealKV and in-memory) sometimes lose updates
        # between concurrent transactions instead of failing one of them (50 concurrent counter
        # increments gave 49), so this process, their only writer, commits one write at a time.
        async with self._writer:
            return await fn(self, *args, **kwargs)

    async def _open(self):
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if self._ready:
                return
            if self.scheme in ON_DISK_SCHEMES:
                self._lock = EmbeddedLock(self.url.partition("://")[2])
                self._lock.acquire()
            try:
                if self.embedded and self._sync_writes:
                    # Read by the engine when it opens a datastore: fsync each commit.
                    os.environ["SURREAL_SYNC_DATA"] = "true"
                db = AsyncSurreal(self.url)
                await db.connect()
                if self._username:
                    await db.signin({"username": self._username, "password": self._password})
                await db.use(self._ns, self._db_name)
                self._db = db
                self.migration = await self._migrate()
                self._ready = True
            except Exception as e:
                self._db = None
                if self._lock:
                    self._lock.release()
                if isinstance(e, StoreError):
                    raise
                raise StoreError(f"cannot open the session store {redact(self.url)}: {e}") from e

    async def _q(self, surql: str, vars: dict | None = None) -> list:
        """Run statements; return each one's result, or raise the first real error."""
        db = self._db
        if db is None:
            raise StoreError("the session store is not connected")
        try:
            resp = await db.query_raw(surql, vars or {})
        except RuntimeError as e:
            raise StoreError(str(e).removeprefix("There was a problem with the database: ")) from e
        except asyncio.CancelledError:
            # The SDK cancels a pending request when its server connection drops.
            if self.embedded or db.socket is None or db.socket.close_code is None:
                raise
            self._lost(db, "connection closed")
        except (OSError, websockets.ConnectionClosed) as e:
            self._lost(db, e)
        if "error" in resp:
            raise StoreError(resp["error"].get("message", str(resp["error"])))
        results = resp["result"]
        errors = [r["result"] for r in results if r["status"] != "OK"]
        if errors:
            real = [e for e in errors if not str(e).startswith("The query was not executed due to a failed transaction")]
            message = str((real or errors)[0])
            for token, exc in _THROWN.items():
                if token in message:
                    raise exc(message.removeprefix("An error occurred: "))
            raise StoreError(message)
        return [r["result"] for r in results]

    def _lost(self, db, why):
        # A server connection that dropped stays dead in the SDK: forget it; the next call reconnects.
        if self._db is db:
            self._db = None
            self._ready = False
        raise StoreError(f"lost the connection to the session store {redact(self.url)} ({why}); the next call reconnects")

    async def _tx(self, surql: str, vars: dict | None = None):
        """One transaction returning its RETURN value, retried when it lost a write conflict (several
        connections to one server, or two writers of one record in this process)."""
        for attempt in range(RETRIES):
            try:
                return (await self._q(f"BEGIN;\n{surql}\nCOMMIT;", vars))[-1]
            except StoreError as e:
                if "can be retried" not in str(e) or attempt == RETRIES - 1:
                    raise
            await asyncio.sleep(random.uniform(0, 0.002 * 2**attempt))

    def _session_lock(self, session_id: str):
        """Writers of one session in this process queue instead of conflicting on a server. An
        embedded store already has a single writer (and its direct writes run on several loops,
        which an asyncio.Lock cannot serve)."""
        if self.embedded:
            return contextlib.nullcontext()
        lock = self._session_locks.get(session_id)
        if lock is None:
            lock = self._session_locks[session_id] = asyncio.Lock()
        return lock

    async def _migrate(self) -> dict:
        [rows] = await self._q("SELECT VALUE version FROM meta:schema")
        old = rows[0] if rows else None
        if old is not None and old > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"the session store's schema is version {old}, newer than this code's {SCHEMA_VERSION}: "
                "upgrade exoclaw or point SURREALDB_URL elsewhere"
            )
        if old == SCHEMA_VERSION:
            return {"from": old, "to": SCHEMA_VERSION, "changed": False}
        await self._tx(
            SCHEMA + "UPSERT meta:schema SET version = $version, applied = time::now(); RETURN true;",
            {"version": SCHEMA_VERSION},
        )
        log.info("session store schema %s -> %s applied to %s", old, SCHEMA_VERSION, redact(self.url))
        return {"from": old, "to": SCHEMA_VERSION, "changed": True}

    async def aclose(self) -> None:
        if self._closed:
            return
        await asyncio.wrap_future(self._thread.submit(self._close()))
        self._closed = True
        self._thread.stop()

    def close(self) -> None:
        """Close the connection, release the embedded lock and stop the store's thread."""
        if self._closed:
            return
        self._thread.submit(self._close()).result()
        self._closed = True
        self._thread.stop()

    async def _close(self):
        self._ready = False
        if self._db is not None:
            await self._db.close()
            self._db = None
        if self._lock:
            self._lock.release()

    # --- schema and health ----------------------------------------------------------------------

    @api(write=False)
    async def open(self) -> dict:
        """Open now (refusing a second process on an embedded path) and apply the schema; returns
        what applying it did in this process: {"from": old version or None, "to": version, "changed"}."""
        return self.migration

    @api(write=False)
    async def migrate(self) -> dict:
        """Apply the schema if the recorded version differs; {"from", "to", "changed"}."""
        result = await self._migrate()
        return result if result["changed"] else self.migration

    @api(write=False, direct=True)
    async def health(self) -> dict:
        started = time.perf_counter()
        try:
            [rows] = await self._q("SELECT VALUE version FROM meta:schema")
        except StoreError as e:
            return {"ok": False, "url": redact(self.url), "error": str(e)}
        return {
            "ok": bool(rows) and rows[0] == SCHEMA_VERSION,
            "url": redact(self.url),
            "engine": "embedded" if self.embedded else "server",
            "schema_version": rows[0] if rows else None,
            "latency_ms": round((time.perf_counter() - started) * 1000, 3),
        }

    # --- sessions -------------------------------------------------------------------------------

    @api(write=False, direct=True)
    async def get_session(self, session_id: str) -> dict:
        [rows] = await self._q("SELECT * FROM $s", {"s": _session(session_id)})
        if not rows:
            raise SessionNotFound(f"no session {session_id}")
        return shapes.session_out(rows[0])

    @api(write=False, direct=True)
    async def current_session(self, key: str) -> dict | None:
        [row] = await self._q("RETURN type::thing('session_key', $key).current.*", {"key": key})
        return shapes.session_out(row) if row else None

    async def _resolve(self, session_key_or_id: str) -> dict:
        if session_key_or_id.startswith("agent:"):
            [row] = await self._q("RETURN type::thing('session_key', $key).current.*", {"key": session_key_or_id})
            if not row:
                raise SessionNotFound(f"no session for key {session_key_or_id}")
            return shapes.session_out(row)
        return await Store.get_session.on_store_loop(self, session_key_or_id)

    @api(write=True)
    async def reset(self, key: str) -> dict:
        """Start a fresh session under `key`; the old one stays, no longer current. Returns the new one."""
        async with self._session_lock(f"key:{key}"):
            row = await self._tx(
                """LET $k = type::thing('session_key', $key);
                LET $old = $k.current.*;
                IF $old = NONE { THROW 'session_not_found' };
                UPDATE $old.id SET current = false;
                LET $s = CREATE ONLY session:ulid() CONTENT {
                    key: $old.key, agent: $old.agent, channel: $old.channel, account: $old.account,
                    peer: $old.peer, guild: $old.guild, team: $old.team, previous: $old.id };
                UPDATE $k SET current = $s.id;
                RETURN $s;""",
                {"key": key},
            )
        return shapes.session_out(row)

    @api(write=False)
    async def list_sessions(self, agent: str | None = None, channel: str | None = None, peer: str | None = None,
                            q: str | None = None, status: str | None = None, since: dt.datetime | None = None,
                            until: dt.datetime | None = None, current: bool | None = None, sort: str = "-updated",
                            limit: int = 50, cursor: str | None = None, owner: str | None = None) -> dict:
        """A page of sessions, newest activity first by default; `owner` keeps one owner's.

        `q` matches message text (full-text, stemmed), or a substring of the key or title; `since`/
        `until` keep sessions active in that range (updated >= since, created < until). Returns
        {"items": [session], "total": n, "offset": n, "next_cursor": str | None}."""
        if sort not in SORTS:
            raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
        if status:
            shapes.check_choice("status", status, SESSION_STATUSES)
        limit = max(1, min(int(limit), 500))
        offset = shapes.decode_cursor(cursor)
        where, lets = [], []
        vars = {"agent": agent, "channel": channel, "peer": peer, "owner": owner, "status": status, "since": since,
                "until": until, "current": current, "limit": limit, "start": offset}
        for name in ("agent", "channel", "peer", "owner", "status", "current"):
            if vars[name] not in (None, ""):
                where.append(f"{name} = ${name}")
        if since:
            where.append("updated >= $since")
        if until:
            where.append("created < $until")
        if q and q.strip():
            terms = shapes.query_terms(q)
            vars["ql"], vars["terms"], vars["cap"] = q.strip().lower(), terms, SEARCH_CANDIDATES
            vars["anchor"] = max(terms, key=len) if terms else None
            hits = "[]"
            if terms:
                hits = ("array::distinct((SELECT VALUE session FROM (SELECT session, words FROM message "
                        "WHERE words CONTAINS $anchor LIMIT $cap) WHERE words CONTAINSALL $terms))")
            lets.append(f"LET $hits = {hits};")
            where.append("(id IN $hits OR string::contains(string::lowercase(key), $ql) "
                         "OR string::contains(string::lowercase(title), $ql))")
        cond = f"WHERE {' AND '.join(where)}" if where else ""
        results = await self._q(
            "\n".join(lets) + f"""
            SELECT * FROM session {cond} ORDER BY {SORTS[sort]} LIMIT $limit START $start;
            SELECT count() AS n FROM session {cond} GROUP ALL;""",
            vars,
        )
        rows, counted = results[-2], results[-1]
        total = counted[0]["n"] if counted else 0
        more = offset + len(rows) < total
        return {
            "items": [shapes.session_out(r) for r in rows],
            "total": total,
            "offset": offset,
            "next_cursor": shapes.encode_cursor(offset + len(rows)) if more else None,
        }

    @api(write=True)
    async def delete(self, session_id: str) -> dict:
        """Delete a session with its messages and runs: {"sessions", "messages", "runs"} deleted."""
        async with self._session_lock(str(session_id)):
            return await self._delete(_session(session_id))

    async def _delete(self, s: RecordID) -> dict:
        return await self._tx(
            """LET $sess = (SELECT * FROM $s)[0];
            IF $sess = NONE { THROW 'session_not_found' };
            LET $runs = SELECT id, session_key, idempotency_key FROM run WHERE session = $s;
            LET $c = $sess.message_count;
            DELETE message:[$s, 1]..=[$s, $c];
            DELETE (SELECT VALUE type::thing('idempotency', [session_key, idempotency_key])
                    FROM $runs WHERE idempotency_key != NONE);
            DELETE $runs.id;
            IF $sess.current { DELETE type::thing('session_key', $sess.key) };
            DELETE $s;
            RETURN {sessions: 1, messages: $c, runs: array::len($runs)};""",
            {"s": s},
        )

    @api(write=True)
    async def prune(self, older_than: dt.timedelta | str, dry_run: bool = False) -> dict:
        """Delete sessions (with messages and runs) idle for longer than `older_than` (a timedelta or
        "30d"). Returns the counts {"sessions", "messages", "runs"}, which is all a dry run does."""
        age = shapes.parse_age(older_than) if isinstance(older_than, str) else older_than
        cutoff = dt.datetime.now(dt.timezone.utc) - age
        [old, runs] = await self._q(
            """SELECT id, message_count FROM session WHERE updated < $cutoff;
            SELECT count() AS n FROM run WHERE session IN (SELECT VALUE id FROM session WHERE updated < $cutoff) GROUP ALL;""",
            {"cutoff": cutoff},
        )
        counts = {
            "sessions": len(old),
            "messages": sum(r["message_count"] for r in old),
            "runs": runs[0]["n"] if runs else 0,
        }
        if not dry_run:
            for row in old:
                async with self._session_lock(str(row["id"].id)):
                    try:
                        await self._delete(row["id"])
                    except SessionNotFound:
                        pass
        return counts

    # --- messages -------------------------------------------------------------------------------

    @api(write=True, direct=True)
    async def append_message(self, session_id: str, role: str, content: list[dict] | str, run_id: str | None = None,
                             tokens: int | None = None, interrupted: str | None = None) -> int:
        """Append a message and return its seq (1, 2, 3, … with no gaps). `interrupted` marks the partial
        output of a run that was aborted or failed, e.g. "aborted" or "error: upstream timeout"."""
        shapes.check_choice("role", role, shapes.ROLES)
        blocks = shapes.check_blocks(content)
        text = shapes.text_of(blocks)
        s = _session(session_id)
        message = {
            "role": role,
            "content": blocks,
            "text": text,
            "words": shapes.words_of(text),
            "run": _run(run_id) if run_id else None,
            "tokens": tokens,
            "interrupted": interrupted or None,
        }
        title = shapes.title_of(blocks) if role == "user" else ""
        async with self._session_lock(str(session_id)):
            return await self._tx(
                """LET $seq = (UPDATE $s SET message_count += 1, updated = time::now(), title = title OR $title
                               RETURN VALUE message_count)[0];
                IF $seq = NONE { THROW 'session_not_found' };
                CREATE type::thing('message', [$s, $seq]) SET session = $s, seq = $seq, role = $m.role,
                    content = $m.content, text = $m.text, words = $m.words, run = $m.run, tokens = $m.tokens,
                    interrupted = $m.interrupted;
                RETURN $seq;""",
                {"s": s, "m": message, "title": title},
            )

    _RANGE = """LET $c = $s.message_count;
        LET $hi = IF $before = NONE THEN $c ELSE math::min([$c, $before - 1]) END;
        LET $lo = math::max([1, $hi - $n + 1]);
        SELECT * FROM message:[$s, $lo]..=[$s, $hi];"""

    async def _last(self, s: RecordID, n: int, before_seq: int | None = None) -> list[dict]:
        rows = (await self._q(self._RANGE, {"s": s, "n": int(n), "before": before_seq}))[-1]
        return [shapes.message_out(r) for r in rows]

    _CONTEXT = """LET $c = $s.message_count;
        LET $lo = IF $c = NONE THEN 1 ELSE math::max([1, $c - $n + 1, $after + 1]) END;
        RETURN {count: $c, messages: IF $c = NONE THEN [] ELSE (SELECT seq, role, content FROM message:[$s, $lo]..=[$s, $c]) END};"""

    @api(write=False, direct=True)
    async def llm_context(self, session_id: str, n: int, after_seq: int = 0) -> dict:
        """The last `n` messages as an LLM request needs them, leaving out those up to `after_seq`:
        `{"count": the session's message count (None if it does not exist), "messages": [{"seq",
        "role", "content"}, …] oldest first}`.

        A message never changes once written, so a caller that holds the earlier ones reads only
        what came after them. The fields a request does not use are not read: decoding whole
        messages (search words, timestamps, record ids) was about 2 ms of the 3.4 ms that reading
        50 of them cost, on the path to every run's first delta."""
        [*_, row] = await self._q(self._CONTEXT, {"s": _session(session_id), "n": int(n), "after": int(after_seq)})
        return {"count": row["count"],
                "messages": [{"seq": m["seq"], "role": m["role"], "content": m["content"]} for m in row["messages"]]}

    @api(write=False)
    async def messages(self, session_id: str, after_seq: int = 0, limit: int = 1000) -> list[dict]:
        """Messages with seq after `after_seq`, oldest first, at most `limit`: for reading a whole
        session forwards (exports) one range read at a time."""
        lo = max(0, int(after_seq)) + 1
        [rows] = await self._q(
            "SELECT * FROM message:[$s, $lo]..=[$s, $hi]",
            {"s": _session(session_id), "lo": lo, "hi": lo + max(1, min(int(limit), 10_000)) - 1},
        )
        return [shapes.message_out(r) for r in rows]

    @api(write=False)
    async def history(self, session_key_or_id: str, limit: int = 50, before_seq: int | None = None) -> dict:
        """A page of a session's messages, oldest first, ending just before `before_seq` (or at the
        latest). Returns {"session": session, "messages": [message], "has_more": bool}; pass the
        first message's seq as `before_seq` for the previous page."""
        limit = max(1, min(int(limit), 1000))
        session = await self._resolve(session_key_or_id)
        messages = await self._last(_session(session["id"]), limit, before_seq)
        return {"session": session, "messages": messages, "has_more": bool(messages) and messages[0]["seq"] > 1}

    @api(write=False)
    async def search(self, q: str, limit: int = 20, agent: str | None = None) -> list[dict]:
        """Messages holding every word of `q` (stemmed: "invoice" finds "invoices"), newest first:
        [{"session_id", "session_key", "agent", "seq", "role", "created", "snippet": [(text, is_match), …]}].
        Looks at up to SEARCH_CANDIDATES messages holding the longest word of `q`."""
        terms = shapes.query_terms(q)
        if not terms:
            return []
        cond = "AND session.agent = $agent" if agent else ""
        [rows] = await self._q(
            f"""SELECT session, seq, role, created, text, session.key AS session_key, session.agent AS agent
            FROM (SELECT * FROM message WHERE words CONTAINS $anchor LIMIT $cap)
            WHERE words CONTAINSALL $terms {cond} ORDER BY created DESC LIMIT $limit""",
            {"anchor": max(terms, key=len), "terms": terms, "cap": SEARCH_CANDIDATES, "agent": agent,
             "limit": max(1, min(int(limit), 200))},
        )
        return [
            {"session_id": shapes.key_of(r["session"]), "session_key": r["session_key"], "agent": r["agent"],
             "seq": r["seq"], "role": r["role"], "created": r["created"],
             "snippet": shapes.snippet(shapes.mark_matches(r["text"], terms))}
            for r in rows
        ]

    # --- runs -----------------------------------------------------------------------------------

    @api(write=True, direct=True)
    async def start_run(self, key: str, agent: str, idempotency_key: str | None = None, channel: str = "",
                        account: str = "", peer: str = "", guild: str = "", team: str = "",
                        owner: str = "") -> tuple[dict, dict]:
        """Open `key`'s current session (created on first use, owned by `owner`) and record a queued run
        of `owner` in it, in one transaction: (session, run).

        This is `chat.send`'s one durable write before it answers, so a message costs one commit
        and no separate read. The session is returned as it was opened. A repeated idempotency key
        for `key` raises DuplicateRun carrying the first run, and then nothing is written."""
        fields = _session_fields(key, agent, channel, account, peer, guild, team, owner)
        async with self._session_lock(f"key:{key}"):
            for _ in range(RETRIES):
                try:
                    row = await self._tx(
                        """LET $k = type::thing('session_key', $fields.key);
                        LET $dup = IF $ik = NONE THEN NONE ELSE type::thing('idempotency', [$fields.key, $ik]).run.* END;
                        IF $dup != NONE { RETURN {duplicate: $dup} };
                        LET $sess = $k.current.* ?? {
                            LET $new = CREATE ONLY session:ulid() CONTENT $fields;
                            CREATE $k SET current = $new.id;
                            $new
                        };
                        LET $r = CREATE ONLY run:ulid() CONTENT {
                            session: $sess.id, session_key: $fields.key, agent: $fields.agent, status: 'queued',
                            owner: $fields.owner, idempotency_key: $ik };
                        IF $ik != NONE { CREATE type::thing('idempotency', [$fields.key, $ik]) SET run = $r.id };
                        UPDATE $sess.id SET status = 'queued', updated = time::now();
                        RETURN {session: $sess, run: $r};""",
                        {"fields": fields, "ik": idempotency_key},
                    )
                except StoreError as e:
                    # Another writer (a process on the same server) created the key's session or used
                    # the idempotency key first: the next pass finds what it wrote.
                    if "already exists" not in str(e):
                        raise
                    continue
                if "duplicate" in row:
                    raise DuplicateRun(shapes.run_out(row["duplicate"]))
                return shapes.session_out(row["session"]), shapes.run_out(row["run"])
        raise StoreError(f"could not start a run for {key!r}")

    @api(write=False, direct=True)
    async def get_run(self, run_id: str) -> dict:
        [rows] = await self._q("SELECT * FROM $r", {"r": _run(run_id)})
        if not rows:
            raise RunNotFound(f"no run {run_id}")
        return shapes.run_out(rows[0])

    @api(write=False)
    async def runs(self, session_id: str) -> list[dict]:
        """A session's runs, oldest first."""
        [rows] = await self._q("SELECT * FROM run WHERE session = $s ORDER BY id", {"s": _session(session_id)})
        return [shapes.run_out(r) for r in rows]

    @api(write=True, direct=True)
    async def update_run(self, run_id: str, status: str | None = None, stop_reason: str | None = None,
                         usage: dict | None = None, error: str | None = None) -> dict:
        """Move a run on: `running` stamps `started`; done/error/aborted stamp `finished` and are final.
        `usage` is the run's running total ({"input_tokens", "output_tokens", …}); the session's token
        totals follow it."""
        sets = []
        if status is not None:
            shapes.check_choice("status", status, shapes.RUN_STATUSES)
            sets += ["status = $status"]
            if status != "queued":
                sets += ["started = started ?? time::now()"]
            if status in shapes.FINAL_STATUSES:
                sets += ["finished = time::now()"]
        if stop_reason is not None:
            sets.append("stop_reason = $stop_reason")
        if usage is not None:
            if not isinstance(usage, dict):
                raise InvalidInput("usage must be a dict such as {'input_tokens': 10, 'output_tokens': 5}")
            sets.append("usage = $usage")
        if error is not None:
            sets.append("error = $error")
        set_clause = f"SET {', '.join(sets)}" if sets else ""
        try:
            row = await self._tx(
                f"""LET $before = (SELECT status, session FROM $r)[0];
                IF $before = NONE {{ THROW 'run_not_found' }};
                IF $status != NONE AND $before.status IN $final AND $status != $before.status {{
                    THROW 'run_final: run ' + <string> $r + ' is already ' + $before.status }};
                LET $after = (UPDATE $r {set_clause} RETURN AFTER)[0];
                LET $totals = (SELECT math::sum(usage.input_tokens ?? 0) AS i, math::sum(usage.output_tokens ?? 0) AS o
                               FROM run WHERE session = $before.session GROUP ALL)[0];
                UPDATE $before.session SET updated = time::now(), tokens_in = $totals.i, tokens_out = $totals.o,
                    status = IF $status != NONE THEN $status ELSE status END;
                RETURN $after;""",
                {"r": _run(run_id), "status": status, "stop_reason": stop_reason, "usage": usage, "error": error,
                 "final": list(shapes.FINAL_STATUSES)},
            )
        except StoreError as e:
            if "run_final" in str(e):
                raise InvalidInput(str(e).partition("run_final: ")[2]) from None
            raise
        return shapes.run_out(row)

    @api(write=True, direct=True)
    async def record_tool_call(self, run_id: str, tool_use_id: str, name: str, input: dict, outcome: str,
                               output: str | None = None, error: str | None = None,
                               started: dt.datetime | None = None, duration_ms: float | None = None,
                               http: list[dict] | None = None) -> None:
        """Add one finished tool call to a run: outcome ok, error, denied, timeout or cancelled; `http`
        lists the plugin's HTTP requests (method, host, path, status, bytes, duration_ms, refused)."""
        shapes.check_choice("outcome", outcome, shapes.TOOL_OUTCOMES)
        call = {"tool_use_id": tool_use_id, "name": name, "input": input, "outcome": outcome, "output": output,
                "error": error, "started": started or dt.datetime.now(dt.timezone.utc),
                "duration_ms": None if duration_ms is None else float(duration_ms)}
        if http:
            # The store keeps no null fields: a request's absent status or reason is left out.
            call["http"] = [{k: v for k, v in r.items() if v is not None} for r in http]
        updated = await self._tx(
            "RETURN (UPDATE $r SET tool_calls += $call RETURN VALUE id);",
            {"r": _run(run_id), "call": call},
        )
        if not updated:
            raise RunNotFound(f"no run {run_id}")
