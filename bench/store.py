"""Session store speed against the bare SurrealDB SDK, measured in the same run on the same data.

    .venv/bin/python bench/store.py [--messages 100000] [--reads 300] [--appends 2000]

On an embedded `surrealkv://` store in a temporary directory (fsync per commit, as in production):
- context load: the last 50 messages of a session holding --messages messages, through
  `await store.llm_context(...)` (what every run reads first) vs the same SurrealQL through
  `AsyncSurreal.query_raw`;
- appends: `await store.append_message(...)` one after another vs the same transaction through the SDK;
- for scale, `ORDER BY seq DESC LIMIT 50` (what the record-ID range replaces) on the same session;
- the longest stall of the caller's event loop while each side loads contexts;
- why search uses an indexed word array: appends/s into a fresh table with that index vs with a
  SurrealDB BM25 SEARCH index, through the bare SDK.
The baseline is the store's own SDK connection, and the two alternate call by call, so drift on a
noisy machine hits both alike. Figures on stdout.
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from surrealdb import AsyncSurreal, RecordID  # noqa: E402

from agents.store import Store  # noqa: E402
from agents.store.core import Store as _StoreClass  # noqa: E402
from agents.store.shapes import words_of  # noqa: E402

VOCABULARY = [f"{a}{b}" for a in ("re", "con", "pro", "trans", "de", "in", "sub", "inter") for b in (
    "port", "form", "duct", "tract", "vert", "spect", "struct", "mit", "pose", "scribe", "fer", "ject", "tain",
    "volve", "sume", "cede", "pel", "press", "vise", "dict")]
WEIGHTS = [1 / (i + 1) for i in range(len(VOCABULARY))]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choices(VOCABULARY, WEIGHTS, k=12)) + f" {rng.randrange(10**6)}"

APPEND = """BEGIN;
LET $seq = (UPDATE $s SET message_count += 1, updated = time::now(), title = title OR $title
            RETURN VALUE message_count)[0];
IF $seq = NONE { THROW 'session_not_found' };
CREATE type::thing('message', [$s, $seq]) SET session = $s, seq = $seq, role = $m.role,
    content = $m.content, text = $m.text, run = $m.run, tokens = $m.tokens, interrupted = $m.interrupted;
RETURN $seq;
COMMIT;"""


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class StallMeter:
    """Longest gap between 1 ms ticks of the current loop: how long the loop was kept from running."""

    def __init__(self):
        self.worst = 0.0
        self._task = None

    async def _tick(self):
        while True:
            t = time.perf_counter()
            await asyncio.sleep(0.001)
            self.worst = max(self.worst, time.perf_counter() - t - 0.001)

    def __enter__(self):
        self._task = asyncio.get_running_loop().create_task(self._tick())
        return self

    def __exit__(self, *exc):
        self._task.cancel()


async def bare_connect(url):
    db = AsyncSurreal(url)
    await db.connect()
    await db.use("exoclaw", "exoclaw")
    return db


async def populate(url: str, n: int) -> str:
    store = Store(url)
    session, _ = await store.start_run("agent:bench:-:-:long", "bench")
    await store.aclose()
    db = await bare_connect(url)
    s = RecordID("session", session["id"])
    started = time.perf_counter()
    rng = random.Random(7)
    batch = 1000
    for lo in range(1, n + 1, batch):
        rows = []
        for i in range(lo, min(n, lo + batch - 1) + 1):
            text = sentence(rng)
            rows.append({"id": RecordID("message", [s, i]), "session": s, "seq": i,
                         "role": "user" if i % 2 else "assistant", "content": [{"type": "text", "text": text}],
                         "text": text, "words": words_of(text)})
        await db.query_raw("INSERT INTO message $rows", {"rows": rows})
    await db.query_raw("UPDATE $s SET message_count = $n", {"s": s, "n": n})
    await db.close()
    print(f"populated {n:,} messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return session["id"]


async def interleaved(store, session_id, reads, appends):
    """The same work through the store and straight through its SDK connection, one call each in
    turn, so a noisy machine slows both alike."""
    db = store._db
    context_vars = {"s": RecordID("session", session_id), "n": 50, "after": 0}
    append_vars = {"s": RecordID("session", session_id), "title": "hello", "m": {
        "role": "user", "content": [{"type": "text", "text": "hello"}], "text": "hello", "words": ["hello"],
        "run": None, "tokens": None, "interrupted": None}}
    for _ in range(20):
        await db.query_raw(_StoreClass._CONTEXT, context_vars)
        await store.llm_context(session_id, 50)
    bare_r, ours_r, bare_a, ours_a = [], [], [], []
    for _ in range(reads):
        t = time.perf_counter()
        resp = await db.query_raw(_StoreClass._CONTEXT, context_vars)
        bare_r.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = await store.llm_context(session_id, 50)
        ours_r.append(time.perf_counter() - t)
    assert len(resp["result"][-1]["result"]["messages"]) == 50 and len(got["messages"]) == 50
    for _ in range(appends):
        t = time.perf_counter()
        resp = await db.query_raw(APPEND, append_vars)
        bare_a.append(time.perf_counter() - t)
        assert resp["result"][-1]["status"] == "OK", resp
        t = time.perf_counter()
        await store.append_message(session_id, "user", "hello")
        ours_a.append(time.perf_counter() - t)
    return bare_r, ours_r, bare_a, ours_a


async def stalls(store, session_id, reads):
    """Longest stall of the calling loop while loading contexts, through the SDK and the store."""
    db = store._db
    vars = {"s": RecordID("session", session_id), "n": 50, "after": 0}
    with StallMeter() as bare:
        for _ in range(reads):
            await db.query_raw(_StoreClass._CONTEXT, vars)
    with StallMeter() as ours:
        for _ in range(reads):
            await store.llm_context(session_id, 50)
    return bare.worst, ours.worst


async def naive_reads(db, session_id, reads=3):
    samples = []
    for _ in range(reads):
        t = time.perf_counter()
        await db.query_raw("SELECT * FROM message WHERE session = $s ORDER BY seq DESC LIMIT 50",
                           {"s": RecordID("session", session_id)})
        samples.append(time.perf_counter() - t)
    return samples


SEARCH_INDEXES = {
    "indexed word array (ours)": "DEFINE FIELD words ON message TYPE array<string>; "
                                 "DEFINE INDEX message_words ON message FIELDS words;",
    "BM25 SEARCH index": "DEFINE ANALYZER w TOKENIZERS blank, class, punct FILTERS lowercase, ascii, snowball(english); "
                         "DEFINE INDEX message_text ON message FIELDS text SEARCH ANALYZER w BM25 HIGHLIGHTS;",
}


async def search_index_appends(tmp: Path, count: int) -> dict:
    rates = {}
    for name, ddl in SEARCH_INDEXES.items():
        db = await bare_connect(f"surrealkv://{tmp / name.split()[0]}")
        await db.query_raw("DEFINE TABLE message SCHEMALESS; " + ddl)
        rng, s = random.Random(3), RecordID("session", "x")
        started = time.perf_counter()
        for i in range(1, count + 1):
            text = sentence(rng)
            await db.query_raw("CREATE type::thing('message', [$s, $i]) SET text = $text, words = $words",
                               {"s": s, "i": i, "text": text, "words": words_of(text)})
        rates[name] = count / (time.perf_counter() - started)
        await db.close()
    return rates


def row(name, base, ours, unit="ms", scale=1000.0):
    (bm, bp), (om, op) = base, ours
    return (f"{name:<34} {bm * scale:9.3f} {bp * scale:9.3f}   {om * scale:9.3f} {op * scale:9.3f}   "
            f"{om / bm:6.2f} {op / bp:6.2f}  ({unit})")


async def main(args):
    # The bare SDK must write with the same durability as the store does.
    os.environ["SURREAL_SYNC_DATA"] = "true"
    with tempfile.TemporaryDirectory(prefix="exoclaw-bench-") as tmp:
        url = f"surrealkv://{Path(tmp) / 'sessions'}"
        long_session = await populate(url, args.messages)
        store = Store(url)
        await store.open()
        bare_r, ours_r, bare_a, ours_a = [], [], [], []
        for r in range(args.rounds):
            print(f"round {r + 1}/{args.rounds}", file=sys.stderr)
            br, orr, ba, oa = await interleaved(store, long_session, args.reads, args.appends // args.rounds)
            bare_r += br
            ours_r += orr
            bare_a += ba
            ours_a += oa
        bare_stall, our_stall = await stalls(store, long_session, args.reads)
        naive = await naive_reads(store._db, long_session)
        await store.aclose()
        index_rates = await search_index_appends(Path(tmp), args.index_appends)

    print(f"Session store vs bare SurrealDB SDK (the store's own connection), surrealkv:// with fsync, "
          f"{args.messages:,}-message session; calls alternate one by one")
    print(f"{'':<34} {'bare median':>9} {'p99':>9}   {'store median':>9} {'p99':>9}   {'ratio':>6} {'p99':>6}")
    print(row("last 50 messages (context load)", stats(bare_r), stats(ours_r)))
    print(row("append one message", stats(bare_a), stats(ours_a)))
    print(f"{'appends/s, one after another':<34} {len(bare_a) / sum(bare_a):9.0f} {'':>9}   "
          f"{len(ours_a) / sum(ours_a):9.0f}")
    print(f"{'ORDER BY seq DESC LIMIT 50 (bare)':<34} {statistics.median(naive) * 1000:9.1f} ms median of {len(naive)}")
    print(f"{'worst caller-loop stall, loads':<34} {bare_stall * 1000:9.3f} {'':>9}   {our_stall * 1000:9.3f}    (ms)")
    ours_rate, bm25_rate = index_rates.values()
    print(f"appends/s into a fresh table, bare SDK, {args.index_appends} each: indexed word array "
          f"{ours_rate:.0f}, BM25 SEARCH index {bm25_rate:.0f} (ratio {ours_rate / bm25_rate:.1f})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=100_000, help="length of the long session (default 100000)")
    parser.add_argument("--reads", type=int, default=300, help="context loads per side per round (default 300)")
    parser.add_argument("--appends", type=int, default=2000, help="appends per side, over all rounds (default 2000)")
    parser.add_argument("--index-appends", type=int, default=1000,
                        help="appends per search-index variant (default 1000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating bare/store rounds (default 3)")
    asyncio.run(main(parser.parse_args()))
