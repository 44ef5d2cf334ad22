"""The `exoclaw` command (`pip install .` puts it on the PATH; `python -m exoclaw` is the same).

`exoclaw chat` runs the terminal client (exoclaw/cli/chat.py) without loading Django, so a one-shot
message answers quickly. Every other command is one of the project's management commands, run as
`manage.py` would run it: `exoclaw serve`, `exoclaw worker`, `exoclaw doctor`, `exoclaw migrate`, …
This module imports nothing of Django at the top, so `chat` stays light.
"""

import os
import sys
import textwrap

# The apps whose commands `exoclaw --help` lists first, with their one-line summaries.
OUR_APPS = ("exoclaw", "agents", "openai_api", "routing", "sandbox", "webhooks")

INTRO = """\
exoclaw {version}: a WASM-sandboxed runtime for AI agents.

Usage: exoclaw COMMAND [options]     (exoclaw COMMAND --help for one command's options and an example)

Start here:
  exoclaw serve                          set up a fresh database (migrate, the demo agent), then serve
                                         http://{bind}/ (admin at /admin/, chat at /)
  exoclaw chat --message 'hello there'   ask the running server; `exoclaw chat` alone is interactive
  exoclaw doctor                         check this deployment's configuration for risks

Files: {var_dir} (EXOCLAW_VAR_DIR)"""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["chat"]:
        from .chat import main as chat_main

        return chat_main(argv[1:], prog="exoclaw chat")
    if argv in (["--version"], ["version"]):
        import django

        import exoclaw

        print(f"exoclaw {exoclaw.__version__} (Django {django.get_version()})")
        return 0
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "exoclaw.settings")
    from django.core.management import ManagementUtility

    class ExoclawUtility(ManagementUtility):
        def main_help_text(self, commands_only=False):
            return super().main_help_text(commands_only=True) if commands_only else overview()

    ExoclawUtility(["exoclaw", *argv]).execute()
    return 0


def overview() -> str:
    """`exoclaw --help`: what to run first, then every command, ours with their summaries."""
    from django.conf import settings
    from django.core.management import get_commands, load_command_class

    import exoclaw

    commands = get_commands()
    ours, others = [], []
    for name, app in sorted(commands.items()):
        if app in OUR_APPS:
            text = f"{name:<16} {summary(load_command_class(app, name).help)}"
            ours += textwrap.wrap(text, width=100, initial_indent="  ", subsequent_indent=" " * 19)
        else:
            others.append(name)
    lines = [
        INTRO.format(version=exoclaw.__version__, bind=settings.EXOCLAW_BIND, var_dir=settings.VAR_DIR),
        "",
        "exoclaw's commands:",
        *ours,
        "",
        "Django's and Channels' commands (exoclaw COMMAND --help for each):",
        *textwrap.wrap(", ".join(others), width=100, initial_indent="  ", subsequent_indent="  "),
    ]
    return "\n".join(lines)


def summary(help_text: str) -> str:
    """A command's first sentence."""
    words = " ".join((help_text or "").split("\n\n")[0].split())
    return words.split(". ")[0].rstrip(".")
