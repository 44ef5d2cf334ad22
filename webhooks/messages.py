"""What adapters say, checked: the normalized incoming message and the outgoing platform requests.

An adapter is a plugin and its output is untrusted, so everything it returns is validated here
before the host acts on it. Pure functions; `AdapterOutputError` says what is wrong.
"""

import json
from dataclasses import dataclass, field
from urllib.parse import quote

ID_FIELDS = ("account", "peer", "guild", "team", "sender", "message_id", "update_id")
MAX_ID_LENGTH = 128
# An opaque reference the platform needs to answer (Discord's interaction token is about 200 characters).
MAX_REPLY_REF_LENGTH = 1024
# What an adapter may ask the view to send back at once (Slack's challenge, Discord's PONG).
MAX_RESPOND_BYTES = 16 * 1024
METHODS = ("POST", "PUT", "PATCH")
AUTHS = ("", "bearer")
TOKEN_PLACEHOLDER = "{token}"


class AdapterOutputError(ValueError):
    """The adapter returned something the host cannot use."""


@dataclass(frozen=True)
class Incoming:
    content: str
    account: str
    peer: str
    guild: str = ""
    team: str = ""
    sender: str = ""
    message_id: str = ""
    update_id: str = ""
    reply_ref: str = ""
    respond: dict | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Skipped:
    reason: str
    update_id: str = ""
    respond: dict | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Outgoing:
    method: str
    path: str
    json: object
    sign: bool = False
    auth: str = ""


def _ident(data: dict, field: str) -> str:
    value = data.get(field)
    if value is None:
        return ""
    # Platforms use numbers (Telegram's chat and update ids) or strings; routing and dedupe use strings.
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise AdapterOutputError(f"{field} must be a string or an integer, not {type(value).__name__}")
    value = str(value)
    if len(value) > MAX_ID_LENGTH:
        raise AdapterOutputError(f"{field} is longer than {MAX_ID_LENGTH} characters")
    return value


def _respond(data: dict) -> dict | None:
    respond = data.get("respond")
    if respond is None:
        return None
    if not isinstance(respond, dict):
        raise AdapterOutputError('"respond" must be a JSON object (the HTTP answer to send at once)')
    if len(json.dumps(respond)) > MAX_RESPOND_BYTES:
        raise AdapterOutputError(f'"respond" is larger than {MAX_RESPOND_BYTES} bytes')
    return respond


def _reply_ref(data: dict) -> str:
    value = data.get("reply_ref", "")
    if not isinstance(value, str) or len(value) > MAX_REPLY_REF_LENGTH:
        raise AdapterOutputError(f"reply_ref must be a string of at most {MAX_REPLY_REF_LENGTH} characters")
    return value


def parse_incoming_output(data, default_account: str = "") -> Incoming | Skipped:
    """Check `parse_incoming`'s result. The endpoint's account fills in when the adapter has none.
    A message whose text is only whitespace (any Unicode space) is skipped: nothing to answer."""
    if not isinstance(data, dict):
        raise AdapterOutputError("parse_incoming must return a JSON object")
    respond = _respond(data)
    if data.get("skip") is True:
        reason = data.get("reason")
        return Skipped(reason if isinstance(reason, str) else "", _ident(data, "update_id"), respond)
    content = data.get("content")
    if not isinstance(content, str):
        raise AdapterOutputError('parse_incoming must return a "content" string or {"skip": true}')
    if not content.strip():
        return Skipped("message without text", _ident(data, "update_id"), respond)
    ids = {f: _ident(data, f) for f in ID_FIELDS}
    if not ids["peer"] and not ids["guild"] and not ids["team"]:
        raise AdapterOutputError('parse_incoming must name who to answer: "peer" (or "guild" / "team")')
    ids["account"] = ids["account"] or default_account
    return Incoming(content=content, reply_ref=_reply_ref(data), respond=respond, **ids)


def dedupe_key(update_id: str) -> str:
    """The persistent dedupe key within one endpoint: the platform's update id, or none (no dedupe)."""
    return update_id.strip()


def _one_request(data) -> Outgoing:
    if not isinstance(data, dict):
        raise AdapterOutputError("format_outgoing must return a request object or a list of them")
    method = data.get("method", "POST")
    path = data.get("path", "")
    if method not in METHODS:
        raise AdapterOutputError(f"method must be one of {', '.join(METHODS)}, not {method!r}")
    # Only a path below api_base_url: anything else could send the reply (and the token) elsewhere.
    if not isinstance(path, str) or (path and not path.startswith("/")) or "\\" in path or ".." in path:
        raise AdapterOutputError(f'path must be empty or start with "/" and stay below api_base_url, not {path!r}')
    if "json" not in data:
        raise AdapterOutputError('a request needs a "json" body')
    auth = data.get("auth", "")
    if auth not in AUTHS:
        raise AdapterOutputError(f'auth must be "bearer" or absent, not {auth!r}')
    return Outgoing(method, path, data["json"], data.get("sign") is True, auth)


def parse_outgoing_output(data) -> list[Outgoing]:
    items = data if isinstance(data, list) else [data]
    if not items:
        raise AdapterOutputError("format_outgoing returned no request")
    return [_one_request(item) for item in items]


def request_url(base_url: str, path: str, token: str) -> str:
    """`base_url` + `path` with `{token}` filled in (percent-encoded, so it cannot change the host)."""
    if TOKEN_PLACEHOLDER in path:
        if not token:
            raise AdapterOutputError("the adapter's path needs {token} but the channel has no token configured")
        path = path.replace(TOKEN_PLACEHOLDER, quote(token, safe=":"))
    return base_url.rstrip("/") + path
