"""The base class of our management commands: `--help` keeps its example, and a database nobody
migrated yet gets an instruction instead of a traceback."""

import sys
from argparse import RawDescriptionHelpFormatter
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.migrations.recorder import MigrationRecorder


class ExampleHelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Django's help layout, keeping the line breaks of a command's `help`."""


def unapplied_migrations() -> int:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


def database_is_fresh() -> bool:
    """No migration was ever applied: a new install's database (the file need not exist yet)."""
    return not MigrationRecorder(connections[DEFAULT_DB_ALIAS]).applied_migrations()


def invoked_as_exoclaw() -> bool:
    """Run as the `exoclaw` command (or `python -m exoclaw`) rather than manage.py: messages name it."""
    invoked = Path(sys.argv[0] if sys.argv else "")
    return invoked.name == "exoclaw" or (invoked.name == "__main__.py" and invoked.parent.name == "exoclaw")


class CommandWithExample(BaseCommand):
    """A command whose `--help` shows its `help` text as written, so the example stands on its own line."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", ExampleHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except DatabaseError:
            # A database nobody migrated yet fails with "no such table": say what to do instead.
            missing = unapplied_migrations()
            if not missing:
                raise
            how = "`exoclaw migrate` first" if invoked_as_exoclaw() else "`python manage.py migrate` first (`make run` does it)"
            raise CommandError(f"the database is not set up ({missing} migrations not applied): run {how}") from None
