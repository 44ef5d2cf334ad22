"""A small client for the gateway's JSON-RPC WebSocket, used by `exoclaw chat` (and `manage.py chat`) and by tests.

`RunState` (the events of one run, in order, each once) and `plain_words` (gateway error reasons in
words) are pure; `Gateway` adds the socket: it matches responses to requests by id and sorts the
`chat.event` notifications into one queue per run, so events that arrive before `chat.send`'s
response are kept rather than dropped. It imports nothing of Django (tests/test_cli.py checks).
"""

import asyncio
import itertools
import json
from dataclasses import dataclass, field

import websockets

# The gateway's stable `data.reason` strings, in words a person can act on. The web chat page gets
# this same table from its view, so both clients say the same thing.
REASONS = {
    # Signing in (the gateway's auth errors and the reasons it gives when it closes a connection).
    "auth_required": "Sign in or paste an API token to chat.",
    "token_invalid": "The token was refused: it is not a valid exoclaw token.",
    "token_disabled": "The token was refused: it has been disabled.",
    "token_expired": "The token was refused: it has expired.",
    "bad_authorization_header": "The token was refused: the Authorization header must be 'Bearer <token>'.",
    "auth_timeout": "The server closed the connection because it was not signed in in time.",
    "auth_throttled": "Too many failed sign-in attempts from this address. Wait a minute and try again.",
    "missing_scope": "This token may not do that: it lacks the scope for it.",
    # Using the connection.
    "rate_limited": "Too many requests at once. Wait a moment and try again.",
    "frame_too_large": "The message is too large for the server.",
    "too_many_runs": "Too many replies are running on this connection. Wait for one to finish.",
    "method_not_found": "The server does not know this request; it may be an older version.",
    "invalid_params": "The request was malformed.",
    "parse_error": "The request was malformed.",
    "invalid_request": "The request was malformed.",
    "internal_error": "The server hit an internal error. Its log has the details.",
    "disconnected": "The connection to the server was lost.",
    # Chatting.
    "not_found": "Not found: it may have been deleted, or it belongs to another server.",
    "no_route": "No agent is bound to this channel and peer, and there is no default binding.",
    "no_agent": "There is no enabled agent by that name.",
    "no_run": "That reply is no longer known to the server.",
    "no_session": "There is no conversation here yet.",
    "session_busy": "This conversation is still answering. Wait for it to finish or stop it.",
}


def plain_words(reason: str | None, message: str = "") -> str:
    """The sentence to show for a gateway error: ours for a known reason, else the gateway's message."""
    return REASONS.get(reason or "") or message or f"The server answered with an error ({reason or 'no reason'})."


# Close codes the gateway uses when it refuses a connection; the close reason is one of REASONS.
CLOSE_UNAUTHORIZED = 4401
CLOSE_THROTTLED = 4429

TOKEN_REFUSED_REASONS = {"token_invalid", "token_disabled", "token_expired", "bad_authorization_header"}


class GatewayError(Exception):
    """A JSON-RPC error object from the gateway, or the connection failing under a request."""

    def __init__(self, message: str, *, code: int | None = None, reason: str | None = None, data=None):
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.data = data

    @classmethod
    def from_error(cls, error: dict) -> "GatewayError":
        data = error.get("data") if isinstance(error.get("data"), dict) else {}
        reason = data.get("reason")
        return cls(plain_words(reason, error.get("message", "")), code=error.get("code"), reason=reason, data=data)


class TokenRefused(GatewayError):
    """The gateway would not accept the token (or, without one, the connection)."""


class SeqGap(Exception):
    """An event skipped a sequence number: the client must re-subscribe from the last one it has."""


@dataclass
class ToolCall:
    call_id: str
    name: str
    input: object
    content: str | None = None
    is_error: bool = False
    error_kind: str | None = None
    duration_ms: float | None = None


@dataclass
class RunState:
    """What one run has said so far. `apply` takes events in any order the network delivers them,
    drops repeats (a replay after `chat.subscribe` overlaps what was seen) and refuses gaps."""

    run_id: str
    last_seq: int = 0
    text: str = ""
    tools: dict[str, ToolCall] = field(default_factory=dict)
    done: dict | None = None
    error: dict | None = None

    @property
    def finished(self) -> bool:
        return self.done is not None or self.error is not None

    def apply(self, event: dict) -> bool:
        """Fold one `chat.event` into the state; False for an event already applied."""
        seq = event["seq"]
        if seq <= self.last_seq:
            return False
        if seq != self.last_seq + 1:
            raise SeqGap(f"run {self.run_id}: expected seq {self.last_seq + 1}, got {seq}")
        self.last_seq = seq
        kind = event.get("type")
        if kind == "delta":
            self.text += event.get("text", "")
        elif kind == "tool_call":
            self.tools[event["call_id"]] = ToolCall(event["call_id"], event.get("name", ""), event.get("input"))
        elif kind == "tool_result":
            call = self.tools.setdefault(event["call_id"], ToolCall(event["call_id"], event.get("name", ""), None))
            call.content = event.get("content")
            call.is_error = bool(event.get("is_error"))
            call.error_kind = event.get("error_kind")
            call.duration_ms = event.get("duration_ms")
        elif kind == "done":
            self.done = event
        elif kind == "error":
            self.error = event
        return True

    @property
    def error_words(self) -> str:
        return plain_words(self.error.get("reason"), self.error.get("message", "")) if self.error else ""


def compact(value, limit: int = 120) -> str:
    """One line for a tool's input or output in a terminal."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, separators=(", ", ": "))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def tool_call_line(event: dict) -> str:
    return f"⚙ {event.get('name', '?')} {compact(event.get('input'))}"


def with_kind(kind: str | None, text: str) -> str:
    """`kind: text`, once: the sandbox's error text already starts with its kind (`host_denied: …`)."""
    if not kind or text.startswith(f"{kind}:"):
        return text
    return f"{kind}: {text}"


def tool_result_line(event: dict) -> str:
    took = f" ({event['duration_ms']:.0f} ms)" if isinstance(event.get("duration_ms"), (int, float)) else ""
    if event.get("is_error"):
        error = with_kind(event.get("error_kind"), compact(event.get("content") or ""))
        return f"  ✗ {event.get('name', '?')} failed{took}: {error}"
    return f"  → {compact(event.get('content') or '')}{took}"


def done_line(event: dict) -> str:
    parts = [event.get("stop_reason") or "done"]
    timings, usage = event.get("timings") or {}, event.get("usage") or {}
    if timings.get("total_ms") is not None:
        parts.append(f"{timings['total_ms']:.0f} ms")
    if timings.get("first_delta_ms") is not None:
        parts.append(f"first token {timings['first_delta_ms']:.0f} ms")
    if usage:
        parts.append(f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out tokens")
    return " · ".join(parts)


def history_lines(messages: list[dict]) -> list[str]:
    """A transcript from `sessions.history` messages, one line per text block or tool use."""
    lines = []
    for m in messages:
        for block in m.get("content") or []:
            kind = block.get("type")
            if kind == "text" and block.get("text"):
                lines.append(f"{m.get('role', '?')}> {block['text']}")
            elif kind == "tool_use":
                lines.append(tool_call_line(block))
            elif kind == "tool_result":
                lines.append(tool_result_line({**block, "name": "tool"}))
    return lines


class Gateway:
    """One authenticated WebSocket to the gateway."""

    def __init__(self, ws, *, presented_token: bool = False):
        self._ws = ws
        self._presented_token = presented_token
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future] = {}
        self._runs: dict[str, asyncio.Queue] = {}
        self._closed: GatewayError | None = None
        self._closing_reason: str | None = None
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def connect(cls, url: str, token: str | None = None, *, timeout: float = 10.0) -> "Gateway":
        """Open the socket, presenting the token as a Bearer header (kept out of URLs and access logs)."""
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            ws = await websockets.connect(url, additional_headers=headers, open_timeout=timeout, max_size=2**24)
        except websockets.InvalidStatus as e:
            status = e.response.status_code
            if status in (401, 403):
                what = "the token was refused" if token else "it requires a token (use --token or EXOCLAW_TOKEN)"
                raise TokenRefused(f"The gateway at {url} turned the connection away: {what} (HTTP {status}).",
                                   reason="auth_required") from None
            raise GatewayError(f"The gateway at {url} refused the WebSocket (HTTP {status}).") from None
        except ConnectionRefusedError:
            raise GatewayError(f"Cannot connect to {url}: nothing is listening there. Is the server running "
                               "(exoclaw serve, or make run in a checkout)?", reason="disconnected") from None
        except (OSError, asyncio.TimeoutError, websockets.InvalidURI, websockets.InvalidHandshake) as e:
            raise GatewayError(f"Cannot connect to {url}: {e or type(e).__name__}.", reason="disconnected") from None
        return cls(ws, presented_token=bool(token))

    async def call(self, method: str, params: dict | None = None, *, timeout: float = 30.0):
        if self._closed:
            raise self._closed
        rid = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._pending[rid] = future
        message = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            message["params"] = params
        try:
            await self._ws.send(json.dumps(message))
        except websockets.ConnectionClosed:
            self._pending.pop(rid, None)
            if future.done():
                future.exception()  # the reader failed it too; we raise the same error below
            raise self._lost() from None
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            self._pending.pop(rid, None)

    async def events(self, run_id: str, *, timeout: float = 120.0):
        """Yield the run's events in seq order, each once, until `done` or `error`."""
        state = RunState(run_id)
        queue = self._queue(run_id)
        while not state.finished:
            event = await asyncio.wait_for(queue.get(), timeout)
            if event is None:
                raise self._closed
            try:
                fresh = state.apply(event)
            except SeqGap:
                # Events lost in between: ask the gateway to replay everything after what we have.
                await self.call("chat.subscribe", {"run_id": run_id, "after_seq": state.last_seq})
                continue
            if fresh:
                yield event
        self._runs.pop(run_id, None)

    async def close(self):
        await self._ws.close()
        self._reader.cancel()

    def _queue(self, run_id: str) -> asyncio.Queue:
        return self._runs.setdefault(run_id, asyncio.Queue())

    def _lost(self) -> GatewayError:
        code = self._ws.close_code
        # daphne drops close reasons, so the gateway says why in a `gateway.closing` notification first.
        why = self._closing_reason or self._ws.close_reason
        if code == CLOSE_UNAUTHORIZED:
            reason = why or ("token_invalid" if self._presented_token else "auth_required")
            return TokenRefused(plain_words(reason), reason=reason)
        if code == CLOSE_THROTTLED:
            return GatewayError(plain_words("auth_throttled"), reason="auth_throttled")
        detail = f" (close code {code}{': ' + why if why else ''})" if code not in (None, 1000) else ""
        return GatewayError(f"The connection to the gateway was lost{detail}.", reason="disconnected")

    async def _read(self):
        try:
            async for frame in self._ws:
                self._dispatch(json.loads(frame))
        except (websockets.ConnectionClosed, ValueError):
            pass
        finally:
            self._closed = self._lost()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(self._closed)
            for queue in self._runs.values():
                queue.put_nowait(None)

    def _dispatch(self, message):
        for m in message if isinstance(message, list) else [message]:
            if not isinstance(m, dict):
                continue
            params = m.get("params") if isinstance(m.get("params"), dict) else {}
            if m.get("method") == "chat.event":
                self._queue(str(params.get("run_id"))).put_nowait(params)
                continue
            if m.get("method") == "gateway.closing":
                self._closing_reason = params.get("reason")
                continue
            future = self._pending.get(m.get("id"))
            if future is None or future.done():
                continue
            if "error" in m:
                error = GatewayError.from_error(m["error"])
                if error.reason in TOKEN_REFUSED_REASONS or error.reason == "auth_required":
                    error = TokenRefused(str(error), code=error.code, reason=error.reason, data=error.data)
                future.set_exception(error)
            else:
                future.set_result(m.get("result"))
