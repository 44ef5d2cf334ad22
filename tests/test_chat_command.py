"""`manage.py chat` against a live server (daphne, the echo agent, the calc plugin in the sandbox)."""

import asyncio
import os
import select
import signal
import subprocess
import sys
import time
import uuid

import pytest

from exoclaw.client import Gateway, RunState, TokenRefused
from tests.clients_fixtures import ROOT


def chat(server, *args, input=None, token=None):
    env = {**server.env, "EXOCLAW_TOKEN": token if token is not None else server.token}
    return server.manage("chat", "--url", server.ws_url, *args, input=input, env=env)


def test_message_mode_prints_the_streamed_answer_and_exits_0(exoclaw_server):
    peer = f"cli-{uuid.uuid4().hex[:8]}"
    done = chat(exoclaw_server, "--agent", "demo", "--peer", peer, "--message", "hello from the terminal")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "hello from the terminal\n"
    assert "end_turn" in done.stderr or "[" in done.stderr, done.stderr


def test_message_mode_runs_a_tool_and_shows_it_compactly(exoclaw_server):
    peer = f"cli-{uuid.uuid4().hex[:8]}"
    done = chat(exoclaw_server, "--peer", peer, "--message", '/tool calc {"expr": "6*7"}')
    assert done.returncode == 0, done.stderr
    assert "42" in done.stdout
    assert '⚙ calc.calc {"expr": "6*7"}' in done.stderr
    assert "  → 42" in done.stderr


def test_a_bad_token_exits_1_saying_the_token_was_refused(exoclaw_server):
    done = chat(exoclaw_server, "--message", "hello", token="exo_not-a-real-token")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "token was refused" in lines[0] and "Traceback" not in done.stderr
    assert done.stdout == ""


def test_an_unreachable_gateway_exits_1_with_one_line(exoclaw_server):
    done = exoclaw_server.manage("chat", "--url", "ws://127.0.0.1:9/ws", "--message", "hello")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "Cannot connect to ws://127.0.0.1:9/ws" in done.stderr


def test_interactive_session_streams_then_lists_history_and_sessions(exoclaw_server):
    peer = f"cli-{uuid.uuid4().hex[:8]}"
    typed = "first words here\n/history\n/sessions\n/quit\n"
    done = chat(exoclaw_server, "--agent", "demo", "--peer", peer, input=typed)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "first words here\n" in out
    history = out[out.index("user> first words here"):]
    assert "assistant> first words here" in history
    assert f"agent:demo:cli:token%3AEXOCLAW_TOKEN:{peer}" in out, "the /sessions listing names this conversation"

    # The next time the same person starts the client, /history shows what was said before.
    again = chat(exoclaw_server, "--agent", "demo", "--peer", peer, input="/history\n")
    assert again.returncode == 0, again.stderr
    assert "user> first words here\nassistant> first words here" in again.stdout
    routed = chat(exoclaw_server, "--peer", peer, input="/history\n")
    assert "user> first words here" in routed.stdout, "routing picks the same agent and session"


def test_help_and_unknown_commands_are_answered_locally_and_never_sent(exoclaw_server):
    peer = f"cli-{uuid.uuid4().hex[:8]}"
    typed = "/help\n/frobnicate now\n//slashed text\n/history\n/quit\n"
    done = chat(exoclaw_server, "--agent", "demo", "--peer", peer, input=typed)
    assert done.returncode == 0, done.stderr
    assert "/history shows this conversation" in done.stderr and "/help shows this" in done.stderr
    assert "Unknown command /frobnicate (nothing was sent)." in done.stderr
    history = done.stdout[done.stdout.index("user> "):]
    assert history.splitlines()[:2] == ["user> /slashed text", "assistant> /slashed text"], done.stdout
    assert "frobnicate" not in done.stdout and "/help" not in history


def test_history_of_a_conversation_not_yet_started_says_so(exoclaw_server):
    done = chat(exoclaw_server, "--agent", "demo", "--peer", f"cli-{uuid.uuid4().hex[:8]}", input="/history\n")
    assert done.returncode == 0
    assert "There is no conversation here yet." in done.stderr


def test_abort_typed_while_a_reply_streams_stops_it(exoclaw_server):
    peer = f"cli-{uuid.uuid4().hex[:8]}"
    long_text = " ".join(f"word{i}" for i in range(5000))
    done = chat(exoclaw_server, "--agent", "chatty", "--peer", peer, input=long_text + "\n/abort\n")
    assert done.returncode == 0, done.stderr
    assert "aborting…" in done.stderr
    assert "[aborted" in done.stdout, done.stdout[-500:]
    assert long_text not in done.stdout


def test_ctrl_c_while_a_reply_streams_stops_the_reply_not_the_client(exoclaw_server):
    env = {**exoclaw_server.env, "EXOCLAW_TOKEN": exoclaw_server.token}
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "chat", "--url", exoclaw_server.ws_url, "--agent", "chatty",
         "--peer", f"cli-{uuid.uuid4().hex[:8]}"],
        cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        proc.stdin.write((" ".join(f"word{i}" for i in range(5000)) + "\n").encode())
        proc.stdin.flush()
        streamed = read_until(proc.stdout, b"word0 ", timeout=30)
        proc.send_signal(signal.SIGINT)
        rest, err = proc.communicate(b"/quit\n", timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err.decode()
    assert b"[aborted" in streamed + rest
    assert "aborting…" in err.decode()


def read_until(stream, marker: bytes, timeout: float) -> bytes:
    """Read a pipe until `marker` has come by (select() waits for data, so nothing is slept)."""
    seen = b""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"{marker!r} never came; got {seen[-300:]!r}"
        if select.select([stream], [], [], left)[0]:
            chunk = os.read(stream.fileno(), 65536)
            assert chunk, f"the client exited before {marker!r}; got {seen[-300:]!r}"
            seen += chunk
    return seen


@pytest.mark.asyncio
async def test_gateway_client_follows_a_run_to_done_with_gap_free_events(exoclaw_server):
    gw = await Gateway.connect(exoclaw_server.ws_url, exoclaw_server.token)
    try:
        sent = await gw.call("chat.send", {"text": "one two three", "agent": "demo", "peer": uuid.uuid4().hex})
        state = RunState(sent["run_id"])
        seqs = []
        async for event in gw.events(sent["run_id"]):
            seqs.append(event["seq"])
            state.apply(event)
        assert seqs == list(range(1, len(seqs) + 1))
        assert state.text == "one two three" and state.done["stop_reason"]
        history = await gw.call("sessions.history", {"session_key": sent["session_key"]})
        texts = [b["text"] for m in history["messages"] for b in m["content"] if b["type"] == "text"]
        assert texts[-2:] == ["one two three", "one two three"]
    finally:
        await gw.close()


@pytest.mark.asyncio
async def test_gateway_client_raises_token_refused_for_a_wrong_token(exoclaw_server):
    gw = await Gateway.connect(exoclaw_server.ws_url, "exo_wrong")
    try:
        with pytest.raises(TokenRefused, match="token was refused"):
            await asyncio.wait_for(gw.call("ping"), 10)
    finally:
        await gw.close()
