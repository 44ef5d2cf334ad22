"""What a message is routed by and the session key it lands in: pure, importing nothing of Django, so
the terminal client (`exoclaw chat`) can name a conversation without loading the project."""

from dataclasses import dataclass
from urllib.parse import quote


@dataclass(frozen=True)
class Message:
    channel: str = ""
    account: str = ""
    peer: str = ""
    guild: str = ""
    team: str = ""


def _key_part(value: str) -> str:
    # ':' separates the parts and '=' marks a guild/team scope, so both are escaped inside values;
    # a lone '-' is escaped so that it cannot be read as "missing".
    if not value:
        return "-"
    return "%2D" if value == "-" else quote(value, safe="@.-_")


def session_key(agent: str, msg: Message) -> str:
    """`agent:<agent>:<channel>:<account>:<peer>`; a missing field is `-`, and a message without a peer
    is scoped to its guild or team when it has one (`guild=<id>` / `team=<id>` in the peer slot).
    Values are percent-encoded, so every distinct message maps to a distinct key."""
    if msg.peer:
        scope = _key_part(msg.peer)
    elif msg.guild:
        scope = "guild=" + _key_part(msg.guild)
    elif msg.team:
        scope = "team=" + _key_part(msg.team)
    else:
        scope = "-"
    return ":".join(["agent", _key_part(agent), _key_part(msg.channel), _key_part(msg.account), scope])
