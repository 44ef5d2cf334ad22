"""`manage.py chat`: the terminal client of exoclaw/cli/chat.py (also `exoclaw chat`, which skips Django)."""

from argparse import RawDescriptionHelpFormatter

from django.core.management.base import BaseCommand, CommandError

from exoclaw.cli import chat


class Command(BaseCommand):
    # A client of a server that may be elsewhere: this project's own checks say nothing about it.
    requires_system_checks = []
    help = chat.HELP

    def create_parser(self, prog_name, subcommand, **kwargs):
        # Keep the examples' line breaks in --help.
        kwargs.setdefault("formatter_class", RawDescriptionHelpFormatter)
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # The examples name the command as it was typed: `exoclaw chat` or `python manage.py chat`.
        parser.description = chat.HELP.replace("%(prog)s", "exoclaw chat" if prog_name == "exoclaw" else
                                               f"python {prog_name} {subcommand}")
        return parser

    def add_arguments(self, parser):
        chat.add_arguments(parser)

    def handle(self, *args, **options):
        out, err = self.stdout._out, self.stderr._out
        color = options["force_color"] or (not options["no_color"] and chat.wants_color(err))
        try:
            chat.run(options, stdout=out, stderr=err, color=color)
        except chat.ChatError as e:
            raise CommandError(str(e)) from None
