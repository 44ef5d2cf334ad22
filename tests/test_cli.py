"""The `exoclaw` command from the checkout (`python -m exoclaw`, what the installed script runs): `chat`
answers without importing Django, and its errors and the worker's are one line. tests/test_package.py
installs the real script into a fresh virtualenv."""

import os
import subprocess
import sys
import uuid

from tests.clients_fixtures import ROOT

# Django and what only the server needs: none of it may load for `exoclaw chat`.
SERVER_ONLY = ("django", "channels", "channels_redis", "daphne", "twisted", "environ", "extism", "surrealdb")


def exoclaw(*args, env=None, python_flags=()):
    return subprocess.run([sys.executable, *python_flags, "-m", "exoclaw", *args], cwd=ROOT, env=env or os.environ,
                          capture_output=True, text=True, timeout=60)


def test_exoclaw_chat_answers_a_live_server_without_importing_django(exoclaw_server):
    env = {**exoclaw_server.env, "EXOCLAW_TOKEN": exoclaw_server.token}
    done = exoclaw("chat", "--url", exoclaw_server.ws_url, "--agent", "demo", "--peer", f"cli-{uuid.uuid4().hex[:8]}",
                   "--message", "no django needed", env=env, python_flags=("-X", "importtime"))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "no django needed\n"
    imported = [line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")]
    assert "exoclaw.cli.chat" in imported and "websockets" in imported, "python -X importtime reported nothing"
    loaded = sorted({m for m in imported if m.split(".")[0] in SERVER_ONLY})
    assert not loaded, f"exoclaw chat imported {loaded}"


def test_exoclaw_chat_reports_an_unreachable_server_in_one_line():
    done = exoclaw("chat", "--url", "ws://127.0.0.1:9/ws", "--message", "hello")
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("CommandError: Cannot connect to ws://127.0.0.1:9/ws"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_exoclaw_chat_defaults_to_the_server_exoclaw_bind_names():
    env = {**os.environ, "EXOCLAW_BIND": "127.0.0.1:9"}
    done = exoclaw("chat", "--message", "hello", env=env)
    assert done.returncode == 1 and "Cannot connect to ws://127.0.0.1:9/ws" in done.stderr, done.stderr


def test_a_worker_without_redis_says_why_it_would_never_run_anything(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "DJANGO_SETTINGS_MODULE", "DATABASE_URL")}
    env["EXOCLAW_VAR_DIR"] = str(tmp_path)
    done = exoclaw("worker", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert "REDIS_URL is not set" in done.stderr


def test_serve_says_in_one_line_that_it_cannot_reach_the_database(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env |= {"EXOCLAW_VAR_DIR": str(tmp_path), "DATABASE_URL": "postgres://nobody:x@127.0.0.1:1/none"}
    done = exoclaw("serve", "--bind", "127.0.0.1:7399", env=env)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("CommandError: cannot read the database: ")
