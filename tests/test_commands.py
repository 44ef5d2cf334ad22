"""Every exoclaw management command explains itself: an example in --help, a help= on every argument,
and a clear error instead of a traceback on a database nobody migrated."""

import os
import subprocess
import sys

import pytest
from django.core.management import get_commands, load_command_class

from tests.sandbox_fixtures import ROOT

OURS = sorted(name for name, app in get_commands().items() if app in {"exoclaw", "agents", "routing", "sandbox", "webhooks"})


def test_the_expected_commands_are_found():
    assert {"serve", "bootstrap", "loadconfig", "dumpconfig", "runplugin", "surreal_migrate", "prunesessions", "pair"} <= set(OURS)


@pytest.mark.parametrize("name", OURS)
def test_help_shows_an_example_on_its_own_line_and_every_argument_is_explained(name):
    command = load_command_class(get_commands()[name], name)
    parser = command.create_parser("manage.py", name)
    text = parser.format_help()
    example_lines = [line for line in text.splitlines() if line.lstrip().lower().startswith(("example", "manage.py"))]
    assert example_lines, f"{name} --help has no example line:\n{text}"
    assert any(f"manage.py {name}" in line or f"python manage.py {name}" in line for line in text.splitlines()), text
    unexplained = [a.dest for a in parser._actions if not a.help]
    assert not unexplained, f"{name}: arguments without help=: {unexplained}"


@pytest.mark.parametrize("args", [["dumpconfig"], ["bootstrap"], ["serve", "--bind", "0.0.0.0:7399"], ["pair", "list"]])
def test_a_database_nobody_migrated_gets_a_clear_error(tmp_path, args):
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE"}}
    env["EXOCLAW_VAR_DIR"] = str(tmp_path)
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "migrations not applied): run `python manage.py migrate` first" in done.stderr
