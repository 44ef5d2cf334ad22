"""The cached agent lookup on chat.send's path (agents/lookup.py), against the real database."""

import pytest

from agents import lookup
from agents.lookup import TTL, enabled_agent
from agents.models import Agent
from tests.runtime_fixtures import make_agent

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]


async def test_an_agent_is_cached_until_a_save_here_or_the_ttl_for_changes_made_elsewhere(monkeypatch):
    await make_agent("helper", model="m1")
    now = [1000.0]
    monkeypatch.setattr(lookup._cache, "clock", lambda: now[0])
    first = await enabled_agent("helper")
    assert first.model == "m1"
    # A change no signal sees, as when another process makes it: the cached row stays for up to TTL.
    await Agent.objects.filter(name="helper").aupdate(model="m2")
    assert await enabled_agent("helper") is first
    now[0] += TTL
    assert (await enabled_agent("helper")).model == "m2"
    # A save in this process takes effect at once: disabled, then deleted.
    agent = await Agent.objects.aget(name="helper")
    agent.enabled = False
    await agent.asave()
    assert await enabled_agent("helper") is None
    agent.enabled = True
    await agent.asave()
    assert await enabled_agent("helper") is not None
    await agent.adelete()
    assert await enabled_agent("helper") is None


async def test_a_name_that_was_not_found_is_looked_up_again_next_time():
    assert await enabled_agent("later") is None
    # Created without signals (as by another process): found at once, because misses are not cached.
    await Agent.objects.abulk_create([Agent(name="later", provider="echo")])
    assert (await enabled_agent("later")).name == "later"


async def test_a_disabled_agent_is_not_found():
    await make_agent("off", enabled=False)
    assert await enabled_agent("off") is None
