from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError

from common.commands import CommandWithExample, database_is_fresh
from exoclaw.bind import is_loopback_host, parse_bind
from exoclaw.bodylimit import daphne_server_class
from exoclaw.models import ApiToken

# Frames up to this many times GATEWAY_MAX_FRAME_BYTES reach the gateway, which answers them with a
# Payload too large error and keeps the connection; bigger ones make daphne close it (code 1009)
# before they are buffered whole.
TRANSPORT_FRAME_FACTOR = 4


def refuse_unauthenticated_bind(host: str, port: int) -> None:
    """Raise CommandError when `host` is reachable from other machines and no token could guard it."""
    if not is_loopback_host(host) and not ApiToken.objects.filter(enabled=True).exists():
        raise CommandError(
            f"Refusing to listen on {host}:{port} without authentication: anyone who can reach it could run "
            "agents. Create an API token (`manage.py createtoken NAME --scope chat`, the admin, or "
            "EXOCLAW_TOKEN and `manage.py bootstrap`), or bind to 127.0.0.1."
        )


def daphne_args(host: str, port: int) -> list[str]:
    transport_max = str(settings.GATEWAY_MAX_FRAME_BYTES * TRANSPORT_FRAME_FACTOR)
    return [
        "-b", host,
        "-p", str(port),
        "--ping-interval", str(settings.GATEWAY_PING_INTERVAL),
        "--ping-timeout", str(settings.GATEWAY_PING_TIMEOUT),
        "--websocket-max-message-size", transport_max,
        "--websocket-max-frame-size", transport_max,
        "exoclaw.asgi:application",
    ]  # fmt: skip


class Command(CommandWithExample):
    help = (
        "Serve exoclaw (HTTP, the admin and the WebSocket gateway) with daphne on EXOCLAW_BIND.\n"
        "Refuses a non-loopback address unless an API token is configured.\n"
        "On a loopback address, a fresh database (a new install) is first set up as `make run` does:\n"
        "migrate, then bootstrap (the demo agent, the sample plugins, an admin user).\n\n"
        "Examples:\n"
        "  EXOCLAW_BIND=127.0.0.1:7200 python manage.py serve\n"
        "  exoclaw serve --bind 127.0.0.1:8000"
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=settings.EXOCLAW_BIND, help="HOST:PORT (default: EXOCLAW_BIND)")

    def handle(self, *args, bind, **options):
        try:
            host, port = parse_bind(bind)
        except ValueError as e:
            raise CommandError(str(e)) from None
        try:
            fresh = is_loopback_host(host) and database_is_fresh()
        except DatabaseError as e:
            raise CommandError(f"cannot read the database: {(str(e).strip() or type(e).__name__).splitlines()[0]}") from None
        if fresh:
            self._set_up()
        refuse_unauthenticated_bind(host, port)
        from agents.store import StoreError, get_store

        try:
            # Open the session store now: a second process on the same embedded store fails here, at once.
            get_store().sync.open()
        except StoreError as e:
            raise CommandError(str(e)) from None
        from daphne.cli import CommandLineInterface
        from daphne.server import Server

        from exoclaw.gateway.redact import AccessLog

        class RedactingServer(Server):
            def __init__(self, *args, action_logger=None, **kwargs):
                super().__init__(*args, action_logger=AccessLog() if action_logger else None, **kwargs)

        # The gateway's loopback exemption reads EXOCLAW_BIND: it must describe where we really listen.
        settings.EXOCLAW_BIND = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.stderr.write(f"exoclaw listening on http://{bind}/ (admin at /admin/, gateway at ws://{bind}/ws)")
        cli = CommandLineInterface()
        # Request bodies are counted while Twisted receives them (exoclaw/bodylimit.py).
        cli.server_class = daphne_server_class(RedactingServer)
        cli.run(daphne_args(host, port))

    def _set_up(self):
        """A new install on this machine: the tables and the demo, so the first start just works. (A
        reachable address gets no such help: there, migrate and bootstrap are the operator's steps.)"""
        self.stderr.write("serve: a fresh database, setting it up first (migrate, then bootstrap)")
        call_command("migrate", interactive=False, verbosity=0, stdout=self.stderr._out, stderr=self.stderr._out)
        self.stderr.write("serve: migrated")
        call_command("bootstrap", stdout=self.stdout._out, stderr=self.stderr._out)
