"""Running the agent for a webhook message on the run service, and collecting its reply.

Routing, the session and its history, the busy policy, idempotency, handing the run to a worker and
persistence are those of every other way in (`agents.runtime.service`).
"""

import asyncio
from dataclasses import dataclass

from agents.runtime import service
from agents.store import get_store
from routing.resolver import Message

# A run always ends (the runtime's reaper ends runs whose worker died); this only bounds a wait
# that something outside the runtime broke.
RUN_WAIT_SECONDS = 900.0


@dataclass
class Outcome:
    run_id: str = ""
    agent: str = ""
    session_key: str = ""
    reply: str = ""
    error: str = ""


def reply_text(events: list[dict]) -> str:
    """The text to send back: what the assistant said after its last tool call."""
    parts: list[str] = []
    for event in events:
        if event.get("type") == "delta":
            parts.append(event.get("text", ""))
        elif event.get("type") == "tool_call":
            parts = []
    return "".join(parts).strip()


async def _reply_from_history(session_key: str, run_id: str) -> str:
    """What the run's last assistant message said, looking back through the session page by page."""
    before = None
    while True:
        page = await get_store().history(session_key, limit=200, before_seq=before)
        said = [m for m in page["messages"] if m["run_id"] == run_id and m["role"] == "assistant"]
        if said:
            return "".join(b.get("text", "") for b in said[-1]["content"] if b.get("type") == "text").strip()
        if not page["has_more"] or any(m["run_id"] == run_id for m in page["messages"]):
            return ""
        before = page["messages"][0]["seq"]


async def run_agent(text: str, route: Message, *, idempotency_key: str) -> Outcome:
    outcome = Outcome()
    try:
        # The webhook acts as its platform, in that platform's namespace only.
        origin = service.Origin(f"webhook:{route.channel}", "webhook", channels=frozenset({route.channel}))
        started = await service.start(origin, text, route=route, idempotency_key=idempotency_key)
        outcome.run_id, outcome.agent, outcome.session_key = started.run_id, started.agent, started.session_key
        seen = []
        async with asyncio.timeout(RUN_WAIT_SECONDS):
            async for event in service.events(origin, started.run_id, admitted=started.admitted):
                seen.append(event)
                if event["type"] == "error":
                    outcome.error = f"{event.get('reason', 'error')}: {event.get('message', '')}"
                elif event["type"] == "done" and event.get("stop_reason") == "aborted":
                    outcome.error = "the run was aborted"
        outcome.reply = "" if outcome.error else reply_text(seen)
        if not outcome.error and not any(e["type"] == "delta" for e in seen):
            # Only its ending came (the run had ended before this process followed it, and its events
            # are gone): the session history has what it said.
            outcome.reply = await _reply_from_history(outcome.session_key, outcome.run_id)
    except service.ServiceError as e:
        outcome.error = str(e)
    except TimeoutError:
        outcome.error = f"the run did not end within {RUN_WAIT_SECONDS:.0f} s"
    return outcome
