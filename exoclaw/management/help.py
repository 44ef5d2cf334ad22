from argparse import RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand, DjangoHelpFormatter


class ExampleHelpFormatter(DjangoHelpFormatter, RawDescriptionHelpFormatter):
    """Django's help layout, keeping the line breaks of a command's `help`."""


class CommandWithExample(BaseCommand):
    """A command whose `--help` shows its `help` text as written, so the example stands on its own line."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", ExampleHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)
