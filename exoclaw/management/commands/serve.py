from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from exoclaw.bind import is_loopback_host, parse_bind
from exoclaw.models import ApiToken


class Command(BaseCommand):
    help = (
        "Serve exoclaw (HTTP, the admin and the WebSocket gateway) with daphne on EXOCLAW_BIND.\n"
        "Refuses a non-loopback address unless an API token is configured.\n\n"
        "Example: EXOCLAW_BIND=127.0.0.1:7200 python manage.py serve"
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=settings.EXOCLAW_BIND, help="HOST:PORT (default: EXOCLAW_BIND)")

    def handle(self, *args, bind, **options):
        try:
            host, port = parse_bind(bind)
        except ValueError as e:
            raise CommandError(str(e)) from None
        if not is_loopback_host(host) and not settings.EXOCLAW_TOKEN and not ApiToken.objects.filter(enabled=True).exists():
            raise CommandError(
                f"Refusing to listen on {host}:{port} without authentication: anyone who can reach it could run "
                "agents. Set EXOCLAW_TOKEN, create an API token in the admin, or bind to 127.0.0.1."
            )
        from agents.store import StoreError, get_store

        try:
            # Open the session store now: a second process on the same embedded store fails here, at once.
            get_store().sync.open()
        except StoreError as e:
            raise CommandError(str(e)) from None
        from daphne.cli import CommandLineInterface

        self.stderr.write(f"exoclaw listening on http://{bind}/ (admin at /admin/, gateway at ws://{bind}/ws)")
        CommandLineInterface().run(["-b", host, "-p", str(port), "exoclaw.asgi:application"])
