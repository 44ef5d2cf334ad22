"""The base class of our management commands: `--help` keeps its example, and a database nobody
migrated yet gets an instruction instead of a traceback."""

from argparse import RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand, CommandError, DjangoHelpFormatter
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.migrations.executor import MigrationExecutor


class ExampleHelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Django's help layout, keeping the line breaks of a command's `help`."""


def unapplied_migrations() -> int:
    connection = connections[DEFAULT_DB_ALIAS]
    executor = MigrationExecutor(connection)
    return len(executor.migration_plan(executor.loader.graph.leaf_nodes()))


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
            raise CommandError(
                f"the database is not set up ({missing} migrations not applied): "
                "run `python manage.py migrate` first (`make run` does it)"
            ) from None
