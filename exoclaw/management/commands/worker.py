from channels import DEFAULT_CHANNEL_LAYER
from channels.management.commands.runworker import Command as RunWorker
from django.conf import settings
from django.core.management.base import CommandError

from agents.runtime.worker import RUNS_CHANNEL
from common.commands import ExampleHelpFormatter


class Command(RunWorker):
    help = (
        "Execute agent runs that gateways hand out over Redis: `runworker agent-runs`, by its own name.\n"
        "Start any number, on any host sharing REDIS_URL, DATABASE_URL and the session store\n"
        "(docs/architecture.md). Without REDIS_URL runs execute inside `serve` and no worker is needed.\n\n"
        "Example: REDIS_URL=redis://127.0.0.1:6379/0 python manage.py worker"
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        kwargs.setdefault("formatter_class", ExampleHelpFormatter)
        return super().create_parser(prog_name, subcommand, **kwargs)

    def add_arguments(self, parser):
        # runworker's options but its channel list: a worker serves exactly the runs channel.
        parser.add_argument("--layer", default=DEFAULT_CHANNEL_LAYER, help="Channel layer alias (default: default).")

    def handle(self, *args, **options):
        if not settings.REDIS_URL:
            raise CommandError(
                "REDIS_URL is not set: with the in-memory channel layer runs execute inside `serve`, and a "
                "worker would never receive one. Set REDIS_URL for every gateway and worker."
            )
        return super().handle(*args, **{**options, "channels": [RUNS_CHANNEL]})
