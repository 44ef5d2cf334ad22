"""Pure helpers of the store: content-block checks, the plain dicts the store returns, cursors, ages
and search snippets. Nothing here talks to the database."""

import base64
import datetime as dt
import re
import unicodedata
from functools import lru_cache
from typing import Any

import snowballstemmer
from surrealdb import RecordID

from common.durations import parse_duration

from .errors import InvalidInput

ROLES = ("user", "assistant", "system")
RUN_STATUSES = ("queued", "running", "done", "error", "aborted")
FINAL_STATUSES = ("done", "error", "aborted")
TOOL_OUTCOMES = ("ok", "error", "denied", "timeout", "cancelled")
TITLE_LENGTH = 80

# Highlight markers that cannot occur in text we store (control characters are stripped on the way in).
MARK_OPEN, MARK_CLOSE = "\x02", "\x03"
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def check_blocks(content: Any) -> list[dict]:
    """The product's one message format (Anthropic-style content blocks); a bare string is one text block."""
    if isinstance(content, str):
        content = [{"type": "text", "text": content}]
    if not isinstance(content, list) or not content:
        raise InvalidInput("content must be a non-empty list of content blocks or a string")
    for i, block in enumerate(content):
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            ok = isinstance(block.get("text"), str)
        elif kind == "tool_use":
            ok = isinstance(block.get("id"), str) and isinstance(block.get("name"), str) and isinstance(block.get("input"), dict)
        elif kind == "tool_result":
            ok = (
                isinstance(block.get("tool_use_id"), str)
                and isinstance(block.get("content", ""), (str, list))
                and isinstance(block.get("is_error", False), bool)
            )
        else:
            raise InvalidInput(f"content block {i}: type must be text, tool_use or tool_result, not {kind!r}")
        if not ok:
            raise InvalidInput(f"content block {i} ({kind}) is missing a field or has one of the wrong type")
    return content


def _result_text(content) -> str:
    if isinstance(content, str):
        return content
    return " ".join(b.get("text", "") for b in content if isinstance(b, dict))


def text_of(blocks: list[dict]) -> str:
    """What full-text search sees: text blocks, tool names and tool results."""
    parts = []
    for b in blocks:
        if b["type"] == "text":
            parts.append(b["text"])
        elif b["type"] == "tool_use":
            parts.append(b["name"])
        else:
            parts.append(_result_text(b.get("content", "")))
    return _CONTROL.sub(" ", "\n".join(p for p in parts if p))


def title_of(blocks: list[dict]) -> str:
    text = " ".join(b["text"] for b in blocks if b["type"] == "text").split()
    title = " ".join(text)
    return title if len(title) <= TITLE_LENGTH else title[: TITLE_LENGTH - 1].rstrip() + "…"


# Words too common to find anything by; leaving them out keeps every append's index writes few.
STOPWORDS = frozenset(
    "a an and are as at be but by for from has have i if in into is it its me my no not of on or our so "
    "that the their them then there these they this to was we were what when which who will with you your".split()
)
MAX_WORD = 40
_stemmer = snowballstemmer.stemmer("english")


@lru_cache(maxsize=50_000)
def _stem(word: str) -> str:
    return _stemmer.stemWord(word)


def _tokens(text: str) -> list[str]:
    # Lower case without accents ("Café" -> "cafe"), letters of every script kept.
    folded = "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))
    return re.findall(r"\w+", folded)


def words_of(text: str) -> list[str]:
    """The distinct stemmed words of a message, which the `message_words` index holds: "Invoices
    are running late" -> ["invoic", "late", "run"]."""
    return sorted({_stem(t) for t in _tokens(text) if t not in STOPWORDS and len(t) <= MAX_WORD})


def query_terms(q: str | None) -> list[str]:
    """A search box entry as index words: every one must occur in a matching message."""
    return words_of(q or "")


def mark_matches(text: str, terms: list[str]) -> str:
    """`text` with each word whose stem is a search term wrapped in MARK_OPEN/MARK_CLOSE."""
    wanted = set(terms)

    def mark(m):
        word = m.group(0)
        folded = _tokens(word)
        return f"{MARK_OPEN}{word}{MARK_CLOSE}" if folded and _stem(folded[0]) in wanted else word

    return re.sub(r"\w+", mark, text)


def check_choice(name: str, value: str, choices: tuple) -> str:
    if value not in choices:
        raise InvalidInput(f"{name} must be one of {', '.join(choices)}, not {value!r}")
    return value


def parse_age(text: str) -> dt.timedelta:
    """`30d`, `12h`, `2w`, `90m`, `45s` -> timedelta."""
    try:
        return parse_duration(text)
    except ValueError as e:
        raise InvalidInput(str(e)) from None


def encode_cursor(offset: int) -> str:
    return base64.urlsafe_b64encode(f"o{offset}".encode()).decode().rstrip("=")


# Offsets past any real page count; a longer cursor was not made here (and would overflow the query).
MAX_CURSOR_DIGITS = 9


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if raw[0] != "o" or not raw[1:].isdigit() or len(raw) > MAX_CURSOR_DIGITS + 1:
            raise ValueError
        return int(raw[1:])
    except (ValueError, IndexError, UnicodeDecodeError):
        raise InvalidInput(f"bad cursor {cursor!r}: pass back the next_cursor of a previous page") from None


def key_of(value) -> str | None:
    """The bare id of a record link (`session:01J…` -> `01J…`)."""
    return None if value is None else str(value.id if isinstance(value, RecordID) else value)


def session_out(row: dict) -> dict:
    return {
        "id": key_of(row["id"]),
        "key": row["key"],
        "agent": row["agent"],
        "channel": row["channel"],
        "account": row["account"],
        "peer": row["peer"],
        "guild": row["guild"],
        "team": row["team"],
        "owner": row.get("owner", ""),
        "title": row["title"],
        "created": row["created"],
        "updated": row["updated"],
        "message_count": row["message_count"],
        "tokens_in": row["tokens_in"],
        "tokens_out": row["tokens_out"],
        "status": row["status"],
        "current": row["current"],
        "previous_id": key_of(row.get("previous")),
    }


def message_out(row: dict) -> dict:
    return {
        "session_id": key_of(row["session"]),
        "seq": row["seq"],
        "role": row["role"],
        "content": row["content"],
        "run_id": key_of(row.get("run")),
        "tokens": row.get("tokens"),
        "interrupted": row.get("interrupted"),
        "created": row["created"],
    }


def run_out(row: dict) -> dict:
    return {
        "id": key_of(row["id"]),
        "session_id": key_of(row["session"]),
        "session_key": row["session_key"],
        "agent": row["agent"],
        "owner": row.get("owner", ""),
        "status": row["status"],
        "idempotency_key": row.get("idempotency_key"),
        "created": row["created"],
        "started": row.get("started"),
        "finished": row.get("finished"),
        "stop_reason": row.get("stop_reason"),
        "usage": row["usage"],
        "error": row.get("error"),
        "tool_calls": row["tool_calls"],
    }


def jsonable(value):
    """Store results as JSON-ready values: datetimes become ISO 8601 strings."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.datetime):
        return value.isoformat()
    return value


def snippet(marked: str, width: int = 160) -> list[tuple[str, bool]]:
    """Cut a highlighted text to about `width` characters around its first match, as (text, is_match)
    segments, so a template can mark matches without trusting any HTML."""
    start = marked.find(MARK_OPEN)
    lo = max(0, start - width // 3) if start >= 0 else 0
    window = marked[lo : lo + width]
    # Close or drop a marker cut off by the window.
    if window.count(MARK_OPEN) > window.count(MARK_CLOSE):
        window += MARK_CLOSE
    segments, is_match = [], False
    for piece in re.split(f"([{MARK_OPEN}{MARK_CLOSE}])", window):
        if piece == MARK_OPEN:
            is_match = True
        elif piece == MARK_CLOSE:
            is_match = False
        elif piece:
            segments.append((piece, is_match))
    if lo > 0:
        segments.insert(0, ("…", False))
    if lo + width < len(marked):
        segments.append(("…", False))
    return segments
