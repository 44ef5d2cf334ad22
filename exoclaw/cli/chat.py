"""The terminal client: `exoclaw chat`, and `manage.py chat`, which wraps it.

It imports nothing of Django (only `exoclaw.client`, websockets and `routing.keys`), so a one-shot
`exoclaw chat --message` starts in a fraction of the time a management command takes. What it needs
from the configuration it reads from the environment itself: `EXOCLAW_BIND` for the default URL and
`EXOCLAW_TOKEN` for the token (not `.env`: only the server reads that).
"""

import argparse
import asyncio
import collections
import getpass
import os
import signal
import sys
import threading

from exoclaw.bind import DEFAULT_BIND
from exoclaw.client import (
    Gateway,
    GatewayError,
    done_line,
    history_lines,
    plain_words,
    tool_call_line,
    tool_result_line,
)
from routing.keys import Message, session_key

# argparse fills in %(prog)s: `exoclaw chat` or `manage.py chat`.
HELP = (
    "Chat with an exoclaw agent from the terminal over the gateway's WebSocket.\n\n"
    "Interactive: answers stream as they are written, tool calls show as one line each.\n"
    "  /abort (or Ctrl-C) stops the reply, /history shows this conversation,\n"
    "  /sessions lists conversations, /help lists these, /quit leaves; other /words are refused\n"
    "  locally (/tool goes to the agent; // sends text that starts with /).\n"
    "With --message: send one message, print the answer on stdout and exit 0, or exit 1\n"
    "with a one-line error on stderr. Tool calls and timings go to stderr.\n"
    "The server's address comes from EXOCLAW_BIND and the token from EXOCLAW_TOKEN in the environment.\n\n"
    "Examples:\n"
    "  %(prog)s\n"
    "  %(prog)s --agent demo --message 'hello there'\n"
    "  %(prog)s --message '/tool calc {\"expr\": \"6*7\"}'\n"
    "  EXOCLAW_TOKEN=exo_… %(prog)s --url ws://gateway.example:7200/ws --channel cli --peer alice"
)

COMMANDS = (
    "/abort stops the reply, /history shows this conversation, /sessions lists conversations, /help shows this, "
    "/quit leaves."
)
LOCAL_COMMANDS = ("/abort", "/history", "/sessions", "/help", "/quit")
# Lines the agent itself understands: the echo provider's `/tool NAME {json}`. Text starting with // is
# sent with one slash less.
AGENT_COMMANDS = ("/tool",)
ROUTE_OPTIONS = ("agent", "channel", "account", "peer")


class ChatError(Exception):
    """A failure to tell the user in one line (exit status 1)."""


def unknown_command(line: str) -> str | None:
    """The word of a `/word` line that is neither ours nor the agent's (None: the line is fine)."""
    if not line.startswith("/") or line.startswith("//"):
        return None
    word = line.split(maxsplit=1)[0]
    return None if word in LOCAL_COMMANDS or word in AGENT_COMMANDS else word


def default_url() -> str:
    return f"ws://{os.environ.get('EXOCLAW_BIND') or DEFAULT_BIND}/ws"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=None, help="Gateway WebSocket URL (default: ws://EXOCLAW_BIND/ws).")
    parser.add_argument(
        "--token",
        default=None,
        help="API token, sent as a Bearer header (default: the EXOCLAW_TOKEN environment variable; "
        "none is needed on a loopback-bound server).",
    )
    parser.add_argument("--agent", default=None, help="Talk to this agent instead of letting routing decide.")
    parser.add_argument("--channel", default="cli", help="Channel name routing matches (default: cli).")
    parser.add_argument("--account", default=None, help="Account name routing matches.")
    parser.add_argument(
        "--peer",
        default=getpass.getuser(),
        help="Peer id routing matches; it also names your conversation (default: your login name).",
    )
    parser.add_argument("--message", default=None, help="Send this one message, print the answer and exit.")


class Output:
    """A stream written a line at a time (as Django's command output is), coloured only on a terminal."""

    def __init__(self, stream, color: bool = False):
        self._stream = stream
        self._color = color

    def write(self, msg: str = "", ending: str = "\n") -> None:
        if ending and not msg.endswith(ending):
            msg += ending
        self._stream.write(msg)

    def flush(self) -> None:
        self._stream.flush()

    def error(self, msg: str) -> str:
        return f"\x1b[31;1m{msg}\x1b[0m" if self._color else msg

    def info(self, msg: str) -> str:
        return f"\x1b[1m{msg}\x1b[0m" if self._color else msg


def wants_color(stream) -> bool:
    return hasattr(stream, "isatty") and stream.isatty() and not os.environ.get("NO_COLOR")


def run(options: dict, *, stdout=None, stderr=None, color: bool | None = None) -> None:
    """Chat as `options` (the parsed arguments) say; raises ChatError with the line to show."""
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    if color is None:
        color = wants_color(stderr)
    url = options.get("url") or default_url()
    token = options.get("token") or os.environ.get("EXOCLAW_TOKEN") or None
    route = {k: options[k] for k in ROUTE_OPTIONS if options.get(k)}
    client = Client(Output(stdout, color), Output(stderr, color))
    try:
        if options.get("message") is not None:
            asyncio.run(client.one_shot(url, token, route, options["message"]))
        else:
            asyncio.run(client.interactive(url, token, route))
    except GatewayError as e:
        raise ChatError(str(e)) from None
    except KeyboardInterrupt:
        client.stderr.write("")


def main(argv: list[str] | None = None, prog: str = "exoclaw chat") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    options = vars(parser.parse_args(argv))
    try:
        run(options)
    except ChatError as e:
        sys.stderr.write(f"CommandError: {e}\n")
        return 1
    return 0


class Client:
    def __init__(self, stdout: Output, stderr: Output):
        self.stdout = stdout
        self.stderr = stderr
        self._session_key = None
        self._typed_ahead = collections.deque()

    async def one_shot(self, url, token, route, text):
        gw = await Gateway.connect(url, token)
        try:
            failure = await self._send_and_stream(gw, route, text, answer=self.stdout, notes=self.stderr)
        finally:
            await gw.close()
        if failure:
            raise ChatError(failure)

    async def _send_and_stream(self, gw, route, text, *, answer, notes, lines=None) -> str | None:
        """Send one message and write the reply as it streams; the error in words if the run failed."""
        sent = await gw.call("chat.send", {"text": text, **route})
        self._session_key = sent.get("session_key")
        run_id = sent["run_id"]
        if sent.get("queued"):
            notes.write("(queued behind the reply already running in this conversation)")
        watcher = None
        if lines:
            watcher = asyncio.create_task(self._watch_for_abort(gw, run_id, lines, self._typed_ahead))
            # Ctrl-C stops the reply rather than the program; at the prompt it leaves as usual.
            asyncio.get_running_loop().add_signal_handler(signal.SIGINT, lambda: asyncio.ensure_future(
                self._abort(gw, run_id)))
        at_line_start = True
        try:
            async for ev in gw.events(run_id):
                kind = ev.get("type")
                if kind == "delta":
                    answer.write(ev.get("text", ""), ending="")
                    answer.flush()
                    at_line_start = ev.get("text", "").endswith("\n")
                    continue
                if not at_line_start and (notes is answer or kind in ("done", "error")):
                    answer.write("")
                    at_line_start = True
                if kind == "tool_call":
                    notes.write(tool_call_line(ev))
                elif kind == "tool_result":
                    notes.write(tool_result_line(ev))
                elif kind == "done":
                    notes.write(notes.info(f"[{done_line(ev)}]"))
                    return None
                elif kind == "error":
                    return f"The reply failed: {plain_words(ev.get('reason'), ev.get('message', ''))}"
            return None
        finally:
            if watcher:
                watcher.cancel()
                asyncio.get_running_loop().remove_signal_handler(signal.SIGINT)

    async def _abort(self, gw, run_id):
        self.stderr.write("aborting…")
        try:
            await gw.call("chat.abort", {"run_id": run_id})
        except GatewayError as e:
            self.stderr.write(self.stderr.error(f"could not abort: {e}"))

    async def _watch_for_abort(self, gw, run_id, lines, typed_ahead):
        """While a reply streams, /abort stops it; anything else typed waits its turn."""
        while True:
            line = await lines.get()
            if line is not None and line.strip() == "/abort":
                await self._abort(gw, run_id)
                continue
            typed_ahead.append(line)
            if line is None:
                return

    async def interactive(self, url, token, route):
        gw = await Gateway.connect(url, token)
        lines = _stdin_lines()
        target = route.get("agent") or "the routed agent"
        self.stderr.write(f"Connected to {url}, talking to {target}. {COMMANDS}")
        prompt = "you> " if sys.stdin.isatty() else ""  # piped input gets a clean transcript
        try:
            while True:
                self.stdout.write(prompt, ending="")
                self.stdout.flush()
                line = self._typed_ahead.popleft() if self._typed_ahead else await lines.get()
                if line is None:
                    self.stdout.write("")
                    return
                line = line.strip()
                if not line:
                    continue
                unknown = unknown_command(line)
                if unknown:
                    self.stderr.write(self.stderr.error(
                        f"Unknown command {unknown} (nothing was sent). {COMMANDS} "
                        '/tool NAME {"key": "value"} goes to the agent; start with // to send text beginning with /.'
                    ))
                    continue
                if line.startswith("//"):
                    line = line[1:]
                try:
                    if line == "/quit":
                        return
                    elif line == "/help":
                        self.stderr.write(COMMANDS)
                    elif line == "/abort":
                        self.stderr.write("Nothing is running.")
                    elif line == "/history":
                        await self._history(gw, route)
                    elif line == "/sessions":
                        await self._sessions(gw, route)
                    else:
                        failure = await self._send_and_stream(
                            gw, route, line, answer=self.stdout, notes=self.stdout, lines=lines
                        )
                        if failure:
                            self.stderr.write(self.stderr.error(failure))
                except GatewayError as e:
                    if e.reason == "disconnected":
                        raise
                    self.stderr.write(self.stderr.error(f"error: {e}"))
        finally:
            await gw.close()

    async def _history(self, gw, route):
        key = self._session_key or await self._route_key(gw, route)
        try:
            result = await gw.call("sessions.history", {"session_key": key, "limit": 50})
        except GatewayError as e:
            if e.reason not in ("no_session", "not_found"):
                raise
            self.stderr.write(plain_words("no_session"))
            return
        for line in history_lines(result.get("messages", [])):
            self.stdout.write(line)
        if result.get("has_more"):
            self.stdout.write("(older messages not shown)")

    async def _route_key(self, gw, route) -> str:
        """The session key this client's messages go to, before it has sent any (so /history shows the
        conversation an earlier run of the client left)."""
        fields = {f: route.get(f, "") for f in ("channel", "account", "peer")}
        if not fields["account"]:
            # The gateway keeps a client's conversations under its principal (docs/protocol.md, "Ownership").
            fields["account"] = (await gw.call("status"))["principal"]
        if route.get("agent"):
            return session_key(route["agent"], Message(**fields))
        return (await gw.call("routing.resolve", fields))["session_key"]

    async def _sessions(self, gw, route):
        filters = {k: route[k] for k in ("agent", "channel", "peer") if k in route}
        result = await gw.call("sessions.list", {**filters, "limit": 20})
        sessions = result["sessions"]
        if not sessions:
            self.stdout.write("No conversations yet.")
        for s in sessions:
            mark = "*" if s.get("key") == self._session_key else " "
            title = s.get("title") or "(untitled)"
            count, updated = s.get("message_count", 0), str(s.get("updated", ""))[:16].replace("T", " ")
            noun = "message" if count == 1 else "messages"
            self.stdout.write(f"{mark} {s.get('key')}  {title}  [{count} {noun}, {updated}]")


def _stdin_lines() -> asyncio.Queue:
    """Lines typed on stdin, read in a thread so a reply can stream (and be aborted) while we wait; None at EOF."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue = asyncio.Queue()

    def read():
        for line in sys.stdin:
            loop.call_soon_threadsafe(queue.put_nowait, line)
        loop.call_soon_threadsafe(queue.put_nowait, None)

    threading.Thread(target=read, daemon=True).start()
    return queue

