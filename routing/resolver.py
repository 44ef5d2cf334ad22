"""Binding resolution: which agent answers a message, and why.

`pick_binding` is pure (tests call it directly); `resolve_route` adds the database and a cache that
the signals in `routing/signals.py` clear whenever a binding or an agent changes.

Priority is peer > guild > team > account > channel > default. A binding's level is the
highest-priority field it names. Among the enabled bindings of enabled agents whose named fields all
equal the message's, the highest level wins; within a level the binding naming more fields wins; then
the one whose named fields rank higher in the priority order; then the oldest (lowest id).
docs/routing.md is the operator's version of this.
"""

from dataclasses import dataclass

from channels.db import database_sync_to_async

from common.cache import TTLCache

# Message and session_key are pure (routing/keys.py, shared with the terminal client); imported from here too.
from .keys import Message, session_key

PRIORITY = ("peer", "guild", "team", "account", "channel")

# Peers are unbounded (every new user is a new cache key), so the cache forgets its oldest entries.
CACHE_SIZE = 10_000
# Saves clear the cache of the process that made them; other processes (and bulk updates, which
# send no signals) are caught up by this age limit.
CACHE_MAX_AGE = 30.0


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
    level_index = PRIORITY.index(level) if level != "default" else len(PRIORITY)
    return (level_index, -sum(flags), tuple(not f for f in flags), c.id)


def matches(c: Candidate, msg: Message) -> bool:
    return all(getattr(msg, f) == v for f, v in c.match.items() if v)


def pick_binding(candidates: list[Candidate], msg: Message) -> Candidate | None:
    hits = [c for c in candidates if matches(c, msg)]
    return min(hits, key=_rank) if hits else None


def explain(c: Candidate, msg: Message, outranked: list[Candidate] = ()) -> str:
    """Why `c` won; `outranked` are the other bindings that matched too, best first."""
    level = level_of(c.match)
    if level == "default":
        return f"no binding matched channel/account/peer/guild/team, so the default binding #{c.id} applies"
    named = ", ".join(f"{f}={c.match[f]}" for f in PRIORITY if c.match.get(f))
    reason = f"binding #{c.id} matched at the {level} level ({named})"
    if outranked:
        others = ", ".join(f"#{o.id} ({level_of(o.match)} level)" for o in outranked[:3])
        more = f" and {len(outranked) - 3} more" if len(outranked) > 3 else ""
        reason += f"; it outranks {others}{more}, which matched too"
    return reason


def route_for(candidates: list[Candidate], msg: Message) -> Route:
    hits = sorted((c for c in candidates if matches(c, msg)), key=_rank)
    if not hits:
        raise NoRoute(
            "No enabled binding matches this message and there is no default binding "
            "(a binding with every match field empty). Add one in the admin or in the config file."
        )
    c = hits[0]
    return Route(c.agent, c.id, level_of(c.match), explain(c, msg, hits[1:]), session_key(c.agent, msg))


# The enabled bindings, read as one list under one key, and the route each message resolved to.
_ENABLED = "enabled"
_bindings: TTLCache[str, list[Candidate]] = TTLCache(CACHE_MAX_AGE, max_entries=1)
_routes: TTLCache[Message, Route] = TTLCache(CACHE_MAX_AGE, max_entries=CACHE_SIZE)


def clear_cache() -> None:
    # Bindings first: a reader that still got the old bindings took its route ticket before this,
    # so the route it picks from them is not kept.
    _bindings.clear()
    _routes.clear()


def load_candidates() -> list[Candidate]:
    from .models import Binding

    rows = Binding.objects.filter(enabled=True, agent__enabled=True).select_related("agent")
    return [Candidate(b.id, b.agent.name, b.match()) for b in rows]


def _message(channel, account, peer, guild, team) -> Message:
    return Message(channel or "", account or "", peer or "", guild or "", team or "")


def _resolve(msg: Message) -> Route:
    route, ticket = _routes.get(msg)
    if route is not None:
        return route
    candidates, bindings_ticket = _bindings.get(_ENABLED)
    if candidates is None:
        candidates = load_candidates()
        _bindings.put(_ENABLED, candidates, bindings_ticket)
    route = route_for(candidates, msg)
    # A route is as old as the bindings it was picked from: both expire CACHE_MAX_AGE after that read.
    _routes.put(msg, route, ticket, read_at=bindings_ticket.read_at)
    return route


def resolve_route(*, channel="", account="", peer="", guild="", team="") -> Route:
    """The route for a message (None and "" both mean the field is absent). Raises NoRoute."""
    return _resolve(_message(channel, account, peer, guild, team))


async def aresolve_route(*, channel="", account="", peer="", guild="", team="") -> Route:
    """`resolve_route` for async code: a cache hit costs no thread hop; a miss reads the database
    in a worker thread."""
    msg = _message(channel, account, peer, guild, team)
    hit, _ = _routes.get(msg)
    if hit is not None:
        return hit
    return await database_sync_to_async(_resolve)(msg)
