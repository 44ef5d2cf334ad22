import time
from pathlib import Path

from django.core.management.base import CommandError

from common.commands import CommandWithExample
from exoclaw.configfile import ConfigError, apply, read

# Shipped with the package: two agents, the echo and calc sample plugins, and their bindings.
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "exoclaw.toml"


class Command(CommandWithExample):
    help = (
        "Create or update agents, plugins with their grants, and bindings from a TOML file.\n"
        "Rows are found by name (bindings by their match); rows the file does not mention are\n"
        "left alone. A file with any mistake is refused whole and nothing changes.\n"
        "The format is in docs/config.md.\n\n"
        "Examples:\n"
        "  python manage.py loadconfig exoclaw/examples/exoclaw.toml\n"
        "  exoclaw loadconfig --example --check"
    )

    def add_arguments(self, parser):
        parser.add_argument("file", type=Path, nargs="?", help="the TOML file to load, e.g. exoclaw.toml")
        parser.add_argument("--example", action="store_true", help=f"load the example shipped with exoclaw ({EXAMPLE})")
        parser.add_argument(
            "--check", action="store_true", help="validate the file against the database, then change nothing"
        )

    def handle(self, *args, file, example, check, **options):
        if bool(file) == example:
            raise CommandError("give the TOML file to load, or --example for the one shipped with exoclaw")
        file = file or EXAMPLE
        started = time.monotonic()
        try:
            summary = apply(read(file), dry_run=check)
        except ConfigError as e:
            n = len(e.problems)
            raise CommandError(f"{file} refused, nothing changed ({n} problem{'s' * (n != 1)}):\n{e}") from None
        for line in summary.lines(dry_run=check):
            self.stdout.write(line)
        elapsed = f"{time.monotonic() - started:.2f} s"
        self.stderr.write(f"checked {file} in {elapsed}, nothing changed" if check else f"loaded {file} in {elapsed}")
