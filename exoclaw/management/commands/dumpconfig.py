from pathlib import Path

from django.core.management.base import CommandError

from common.commands import CommandWithExample
from exoclaw.configfile import write
from exoclaw.tomlwrite import TomlWriteError


class Command(CommandWithExample):
    help = (
        "Write every agent, plugin (with its grants) and binding as a TOML file that loadconfig\n"
        "reads back. Without -o it prints to stdout with absolute .wasm paths; with -o, paths\n"
        "inside the file's folder are written relative to it.\n\n"
        "Example: python manage.py dumpconfig -o exoclaw.toml"
    )

    def add_arguments(self, parser):
        parser.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    def handle(self, *args, output, **options):
        try:
            text = write(output.parent.absolute() if output else None)
        except TomlWriteError as e:
            raise CommandError(f"cannot write this configuration as TOML: {e}") from None
        if output is None:
            self.stdout.write(text, ending="")
            return
        try:
            output.write_text(text)
        except OSError as e:
            raise CommandError(f"cannot write {output}: {e.strerror}") from None
        self.stderr.write(f"wrote {output}")
