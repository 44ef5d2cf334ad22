"""The routing priority table, its fallbacks and tie-breaks, session keys, and the resolver's cache."""

import itertools
import random
import time

import pytest
from django.db import IntegrityError, transaction
from hypothesis import given
from hypothesis import strategies as st

from agents.models import Agent
from common.routefields import MATCH_FIELDS
from routing.models import Binding
from routing import resolver
from routing.resolver import (
    CACHE_SIZE,
    Candidate,
    Message,
    NoRoute,
    aresolve_route,
    pick_binding,
    resolve_route,
    session_key,
)

LEVELS = ["peer", "guild", "team", "account", "channel", "default"]
FULL = Message(channel="telegram", account="bot1", peer="alice", guild="g1", team="t1")


def cached(msg: Message) -> bool:
    return resolver._routes.get(msg)[0] is not None


def at_level(level: str, id: int, msg: Message = FULL) -> Candidate:
    """A binding naming only `level`'s field, with the message's value (the default names nothing)."""
    match = {} if level == "default" else {level: getattr(msg, level)}
    return Candidate(id, f"agent-{level}", match)


@pytest.mark.parametrize("higher,lower", list(itertools.combinations(LEVELS, 2)))
def test_every_level_beats_every_lower_level(higher, lower):
    # The lower-level binding is older (smaller id) and listed first, so only the level can decide.
    candidates = [at_level(lower, 1), at_level(higher, 2)]
    assert pick_binding(candidates, FULL).agent == f"agent-{higher}"
    assert pick_binding(list(reversed(candidates)), FULL).agent == f"agent-{higher}"


@pytest.mark.parametrize("missing", LEVELS[:-1])
def test_a_level_that_does_not_match_falls_back_to_the_next_one(missing):
    # Bindings at `missing` and below; the message's value for `missing` differs from its binding's.
    candidates = [at_level(level, i) for i, level in enumerate(LEVELS) if i >= LEVELS.index(missing)]
    msg = Message(**{f: getattr(FULL, f) for f in MATCH_FIELDS if f != missing} | {missing: "someone-else"})
    expected = LEVELS[LEVELS.index(missing) + 1]
    assert pick_binding(candidates, msg).agent == f"agent-{expected}"


def test_a_message_with_no_fields_gets_the_default_binding():
    candidates = [at_level(level, i) for i, level in enumerate(LEVELS)]
    assert pick_binding(candidates, Message()).agent == "agent-default"


def test_no_match_and_no_default_gives_none():
    candidates = [at_level(level, i) for i, level in enumerate(LEVELS[:-1])]
    assert pick_binding(candidates, Message(channel="sms", peer="bob")) is None


def test_every_named_field_must_match():
    peer_on_webchat = Candidate(1, "webchat-alice", {"peer": "alice", "channel": "webchat"})
    assert pick_binding([peer_on_webchat], FULL) is None
    assert pick_binding([peer_on_webchat], Message(channel="webchat", peer="alice")).agent == "webchat-alice"


def test_a_more_specific_binding_wins_within_a_level():
    bare = Candidate(1, "bare", {"peer": "alice"})
    with_channel = Candidate(2, "with-channel", {"peer": "alice", "channel": "telegram"})
    with_two = Candidate(3, "with-two", {"peer": "alice", "channel": "telegram", "account": "bot1"})
    assert pick_binding([bare, with_channel], FULL).agent == "with-channel"
    assert pick_binding([bare, with_channel, with_two], FULL).agent == "with-two"


def test_more_fields_never_lift_a_binding_above_a_higher_level():
    account_and_channel = Candidate(1, "specific-account", {"account": "bot1", "channel": "telegram"})
    bare_team = Candidate(2, "bare-team", {"team": "t1"})
    assert pick_binding([account_and_channel, bare_team], FULL).agent == "bare-team"


def test_equally_specific_bindings_are_ordered_by_their_highest_second_field():
    # Both are peer bindings naming two fields; guild ranks above channel.
    peer_channel = Candidate(1, "peer-channel", {"peer": "alice", "channel": "telegram"})
    peer_guild = Candidate(2, "peer-guild", {"peer": "alice", "guild": "g1"})
    assert pick_binding([peer_channel, peer_guild], FULL).agent == "peer-guild"


def test_identical_matches_go_to_the_oldest_binding():
    assert pick_binding([Candidate(7, "newer", {"peer": "alice"}), Candidate(3, "older", {"peer": "alice"})],
                        FULL).agent == "older"


match_dicts = st.dictionaries(st.sampled_from(MATCH_FIELDS), st.sampled_from(["x", "y"]), max_size=5)


@given(st.lists(match_dicts, max_size=8), st.randoms(use_true_random=False))
def test_the_result_does_not_depend_on_the_order_of_candidates(matches, rnd):
    candidates = [Candidate(i, f"a{i}", m) for i, m in enumerate(matches)]
    msg = Message(channel="x", account="x", peer="x", guild="y", team="x")
    expected = pick_binding(candidates, msg)
    shuffled = candidates[:]
    rnd.shuffle(shuffled)
    assert pick_binding(shuffled, msg) == expected


def test_session_key_names_agent_channel_account_and_peer():
    assert session_key("demo", FULL) == "agent:demo:telegram:bot1:alice"


def test_session_key_is_scoped_to_guild_then_team_without_a_peer():
    assert session_key("demo", Message(channel="discord", guild="g1", team="t1")) == "agent:demo:discord:-:guild=g1"
    assert session_key("demo", Message(channel="slack", account="w", team="t1")) == "agent:demo:slack:w:team=t1"
    assert session_key("demo", Message()) == "agent:demo:-:-:-"


def test_session_key_escapes_separators_so_distinct_messages_never_share_a_key():
    assert session_key("demo", Message(channel="a:b", peer="c")) == "agent:demo:a%3Ab:-:c"
    assert session_key("demo", Message(peer="guild=g1")) != session_key("demo", Message(guild="g1"))
    assert session_key("demo", Message(peer="-")) != session_key("demo", Message())


@given(st.builds(Message, *[st.text(max_size=4)] * 5), st.builds(Message, *[st.text(max_size=4)] * 5))
def test_session_keys_differ_whenever_the_scoping_fields_differ(a, b):
    def scope(m):
        if m.peer:
            return (m.channel, m.account, "peer", m.peer)
        if m.guild:
            return (m.channel, m.account, "guild", m.guild)
        return (m.channel, m.account, "team", m.team)

    if scope(a) != scope(b):
        assert session_key("demo", a) != session_key("demo", b)


# The database half: resolve_route reads enabled bindings of enabled agents and caches the answer.


@pytest.fixture
def agents(db):
    return {name: Agent.objects.create(name=name) for name in ("main", "vip", "support")}


@pytest.mark.django_db
def test_resolve_route_reports_agent_binding_level_reason_and_session_key(agents):
    default = Binding.objects.create(agent=agents["main"])
    vip = Binding.objects.create(agent=agents["vip"], peer="alice", channel="telegram")
    route = resolve_route(channel="telegram", account="bot1", peer="alice")
    assert (route.agent, route.binding_id, route.level) == ("vip", vip.id, "peer")
    assert route.reason == (
        f"binding #{vip.id} matched at the peer level (peer=alice, channel=telegram); "
        f"it outranks #{default.id} (default level), which matched too"
    )
    assert route.session_key == "agent:vip:telegram:bot1:alice"
    fallback = resolve_route(channel="webchat", peer="alice")
    assert (fallback.agent, fallback.binding_id, fallback.level) == ("main", default.id, "default")
    assert "default binding" in fallback.reason


@pytest.mark.django_db
def test_no_route_without_a_default_binding(agents):
    Binding.objects.create(agent=agents["vip"], peer="alice")
    with pytest.raises(NoRoute, match="no default binding"):
        resolve_route(channel="webchat", peer="bob")


@pytest.mark.django_db
def test_disabled_bindings_are_ignored(agents):
    Binding.objects.create(agent=agents["main"])
    Binding.objects.create(agent=agents["vip"], peer="alice", enabled=False)
    assert resolve_route(peer="alice").agent == "main"


@pytest.mark.django_db
def test_bindings_of_disabled_agents_are_ignored(agents):
    Binding.objects.create(agent=agents["main"])
    Binding.objects.create(agent=agents["vip"], peer="alice")
    agents["vip"].enabled = False
    agents["vip"].save()
    assert resolve_route(peer="alice").agent == "main"


@pytest.mark.django_db
def test_saving_a_binding_or_an_agent_clears_the_cache(agents):
    binding = Binding.objects.create(agent=agents["main"])
    assert resolve_route(peer="alice").agent == "main"
    binding.agent = agents["support"]
    binding.save()
    assert resolve_route(peer="alice").agent == "support"
    agents["support"].enabled = False
    agents["support"].save()
    with pytest.raises(NoRoute):
        resolve_route(peer="alice")
    binding.delete()
    Binding.objects.create(agent=agents["vip"])
    assert resolve_route(peer="alice").agent == "vip"


@pytest.mark.django_db
def test_a_save_clears_the_cache_again_when_its_transaction_commits(agents, django_capture_on_commit_callbacks):
    # Another thread can cache the old, still committed, bindings between the save and the commit.
    binding = Binding.objects.create(agent=agents["main"])
    with django_capture_on_commit_callbacks() as callbacks:
        binding.note = "edited"
        binding.save()
    resolve_route(peer="bob")
    assert cached(Message(peer="bob"))
    for callback in callbacks:
        callback()
    assert not cached(Message(peer="bob"))


@pytest.mark.django_db
def test_changes_that_send_no_signal_are_seen_once_the_cache_is_old(agents, monkeypatch):
    Binding.objects.create(agent=agents["main"])
    assert resolve_route(peer="alice").agent == "main"
    Binding.objects.update(agent=agents["vip"])  # a bulk update: no signal
    assert resolve_route(peer="alice").agent == "main"
    later = time.monotonic() + resolver.CACHE_MAX_AGE
    for cache in (resolver._bindings, resolver._routes):
        monkeypatch.setattr(cache, "clock", lambda: later)
    assert resolve_route(peer="alice").agent == "vip"


@pytest.mark.django_db
def test_a_route_cached_late_expires_with_the_bindings_it_was_picked_from(agents, monkeypatch):
    now = [1000.0]
    for cache in (resolver._bindings, resolver._routes):
        monkeypatch.setattr(cache, "clock", lambda: now[0])
    Binding.objects.create(agent=agents["main"])
    assert resolve_route(peer="alice").agent == "main"  # reads the bindings at 1000
    Binding.objects.update(agent=agents["vip"])  # a bulk update: no signal
    now[0] += resolver.CACHE_MAX_AGE - 1
    assert resolve_route(peer="bob").agent == "main"  # picked from the bindings read at 1000
    now[0] += 1
    assert resolve_route(peer="bob").agent == "vip"


@pytest.mark.django_db
def test_the_cache_keeps_at_most_cache_size_entries(agents):
    Binding.objects.create(agent=agents["main"])
    for i in range(CACHE_SIZE + 5):
        resolve_route(peer=f"p{i}")
    assert [cached(Message(peer=f"p{i}")) for i in range(5)] == [False] * 5
    assert all(cached(Message(peer=f"p{i}")) for i in range(5, CACHE_SIZE + 5))


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_aresolve_route_resolves_and_sees_changes():
    agent = await Agent.objects.acreate(name="main")
    other = await Agent.objects.acreate(name="other")
    binding = await Binding.objects.acreate(agent=agent)
    assert (await aresolve_route(channel="webchat", peer="bob")).agent == "main"
    binding.agent = other
    await binding.asave()
    assert (await aresolve_route(channel="webchat", peer="bob")).agent == "other"


@pytest.mark.django_db
def test_two_enabled_bindings_with_the_same_match_are_refused_by_the_database(agents):
    Binding.objects.create(agent=agents["main"], channel="telegram")
    with pytest.raises(IntegrityError), transaction.atomic():
        Binding.objects.create(agent=agents["vip"], channel="telegram")
    Binding.objects.create(agent=agents["vip"], channel="telegram", enabled=False)


@pytest.mark.django_db
def test_a_duplicate_match_is_explained_by_clean(agents):
    first = Binding.objects.create(agent=agents["main"], channel="telegram", peer="alice")
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as e:
        Binding(agent=agents["vip"], channel="telegram", peer="alice").full_clean()
    assert e.value.messages == [
        f"The enabled binding #{first.id} (channel=telegram, peer=alice → main) already has this match. "
        "Disable or edit it first, or change this binding's fields."
    ]
    Binding(agent=agents["vip"], channel="telegram", peer="alice", enabled=False).full_clean()
