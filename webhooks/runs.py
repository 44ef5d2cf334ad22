"""Running the agent for a webhook message through `chat.send` itself, and collecting its reply.

The webhook acts as one more gateway connection: a real gateway `Context` whose notifications go
to a queue instead of a socket. So routing, the session and its history, the busy policy,
idempotency, dispatch to workers and persistence are exactly those of a WebSocket client.
"""

import asyncio
import json
from dataclasses import dataclass

from agents.runtime.methods import MAX_TEXT, chat_send
from agents.store import get_store
from exoclaw.gateway.context import Context
from exoclaw.gateway.errors import RpcError

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


async def _nothing(_group: str) -> None:
    return None


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


async def run_agent(*, text: str, channel: str, account: str, peer: str, guild: str, team: str, idempotency_key: str) -> Outcome:
    if len(text) > MAX_TEXT:
        return Outcome(error=f"the message is longer than {MAX_TEXT} characters")
    events: asyncio.Queue = asyncio.Queue()

    async def send_text(frame: str) -> None:
        message = json.loads(frame)
        if message.get("method") == "chat.event":
            events.put_nowait(message["params"])

    ctx = Context(
        connection_id=f"webhook:{channel}:{idempotency_key or id(events)}",
        channel_name="",
        client=f"webhook:{channel}",
        max_runs=1,
        send_text=send_text,
        group_add=_nothing,
        group_discard=_nothing,
    )
    outcome = Outcome()
    try:
        started = await chat_send(
            ctx, text=text, agent="", idempotency_key=idempotency_key,
            channel=channel, account=account, peer=peer, guild=guild, team=team,
        )  # fmt: skip
        outcome.run_id, outcome.agent, outcome.session_key = started["run_id"], started["agent"], started["session_key"]
        seen = []
        async with asyncio.timeout(RUN_WAIT_SECONDS):
            while True:
                event = await events.get()
                seen.append(event)
                if event["type"] == "error":
                    outcome.error = f"{event.get('reason', 'error')}: {event.get('message', '')}"
                    break
                if event["type"] == "done":
                    if event.get("stop_reason") == "aborted":
                        outcome.error = "the run was aborted"
                    break
        outcome.reply = "" if outcome.error else reply_text(seen)
        if not outcome.error and not any(e["type"] == "delta" for e in seen):
            # Only its ending came (the run had ended before this process followed it, and its events
            # are gone): the session history has what it said.
            outcome.reply = await _reply_from_history(outcome.session_key, outcome.run_id)
    except RpcError as e:
        outcome.error = str(e)
    except TimeoutError:
        outcome.error = f"the run did not end within {RUN_WAIT_SECONDS:.0f} s"
    finally:
        await ctx.close()
    return outcome
