"""Every exoclaw management command explains itself: an example in --help, a help= on every argument."""

import pytest
from django.core.management import get_commands, load_command_class

OURS = sorted(name for name, app in get_commands().items() if app in {"exoclaw", "agents", "routing", "sandbox"})


def test_the_expected_commands_are_found():
    assert {"serve", "bootstrap", "loadconfig", "dumpconfig", "runplugin", "surreal_migrate", "prunesessions"} <= set(OURS)


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
