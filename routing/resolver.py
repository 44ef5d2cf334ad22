"""Binding resolution: which agent answers a message, and why.

`pick_binding` is pure (tests call it directly); `resolve_route` adds the database and a cache that
the signals in `routing/signals.py` clear whenever a binding or an agent changes.

Priority is peer > guild > team > account > channel > default. A binding's level is the
highest-priority field it names. Among the enabled bindings whose named fields all equal the
message's, the highest level wins; within a level the binding naming more fields wins; then the one
whose named fields rank higher in the priority order; then the oldest (lowest id).
"""

from dataclasses import dataclass
from threading import Lock
from urllib.parse import quote

from asgiref.sync import sync_to_async

from .models import MATCH_FIELDS

PRIORITY = ("peer", "guild", "team", "account", "channel")


@dataclass(frozen=True)
class Message:
    channel: str = ""
    account: str = ""
    peer: str = ""
    guild: str = ""
    team: str = ""


@dataclass(frozen=True)
class Candidate:
    """What resolution needs to know about one enabled binding."""

    id: int
    agent: str
    match: dict


@dataclass(frozen=True)
class Route:
    agent: str
    binding_id: int
    level: str
    reason: str
    session_key: str


class NoRoute(LookupError):
    """No enabled binding matches the message and there is no default binding."""


def level_of(match: dict) -> str:
    return next((f for f in PRIORITY if match.get(f)), "default")


def _rank(c: Candidate) -> tuple:
    """Sort key, best first: level, then how many fields are named, then which, then age."""
    flags = tuple(bool(c.match.get(f)) for f in PRIORITY)
    level = level_of(c.match)
    return (PRIORITY.index(level) if level != "default" else len(PRIORITY), -sum(flags), tuple(not f for f in flags), c.id)


def matches(c: Candidate, msg: Message) -> bool:
    return all(getattr(msg, f) == v for f, v in c.match.items() if v)


def pick_binding(candidates: list[Candidate], msg: Message) -> Candidate | None:
    hits = [c for c in candidates if matches(c, msg)]
    return min(hits, key=_rank) if hits else None


def session_key(agent: str, msg: Message) -> str:
    """`agent:<agent>:<channel>:<account>:<peer>`; a missing field is `-`, and a message without a peer
    is scoped to its guild or team when it has one (`guild=<id>` / `team=<id>`)."""
    peer = msg.peer or (f"guild={msg.guild}" if msg.guild else f"team={msg.team}" if msg.team else "")
    parts = [agent, msg.channel, msg.account, peer]
    return "agent:" + ":".join(quote(p, safe="=@.-_") if p else "-" for p in parts)


def explain(c: Candidate, msg: Message) -> str:
    level = level_of(c.match)
    if level == "default":
        return f"no binding matched channel/account/peer/guild/team, so the default binding #{c.id} applies"
    named = ", ".join(f"{f}={c.match[f]}" for f in PRIORITY if c.match.get(f))
    return f"binding #{c.id} matched at the {level} level ({named})"


def route_for(candidates: list[Candidate], msg: Message) -> Route:
    c = pick_binding(candidates, msg)
    if c is None:
        raise NoRoute("No binding matches this message and there is no default binding.")
    return Route(c.agent, c.id, level_of(c.match), explain(c, msg), session_key(c.agent, msg))


_cache: dict[Message, Route] = {}
_candidates: list[Candidate] | None = None
_generation = 0
_lock = Lock()


def clear_cache() -> None:
    global _candidates, _generation
    with _lock:
        _cache.clear()
        _candidates = None
        _generation += 1


def load_candidates() -> list[Candidate]:
    from .models import Binding

    rows = Binding.objects.filter(enabled=True, agent__enabled=True).select_related("agent")
    return [Candidate(b.id, b.agent.name, {f: getattr(b, f) for f in MATCH_FIELDS if getattr(b, f)}) for b in rows]


def resolve_route(**fields) -> Route:
    global _candidates
    msg = Message(**{f: fields.get(f) or "" for f in MATCH_FIELDS})
    with _lock:
        hit = _cache.get(msg)
        candidates, generation = _candidates, _generation
    if hit:
        return hit
    if candidates is None:
        candidates = load_candidates()
    route = route_for(candidates, msg)
    with _lock:
        # A change that cleared the cache while we read must not be overwritten by what we read.
        if generation == _generation:
            _candidates = candidates
            _cache[msg] = route
    return route


aresolve_route = sync_to_async(resolve_route, thread_sensitive=True)
