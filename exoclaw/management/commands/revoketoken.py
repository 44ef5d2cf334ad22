from django.core.management.base import CommandError

from common.commands import CommandWithExample
from exoclaw.models import ApiToken


class Command(CommandWithExample):
    help = (
        "Revoke an API token by name: it stops working at once for new connections, and its open\n"
        "connections are closed within GATEWAY_TOKEN_RECHECK_SECONDS (1 s) in every gateway process.\n"
        "The row is kept (disabled), so the admin still shows when it was used.\n\n"
        "Example: python manage.py revoketoken alice-laptop"
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="the token's name, as the admin lists it")

    def handle(self, *args, name, **options):
        token = ApiToken.objects.filter(name=name).first()
        if token is None:
            known = ", ".join(ApiToken.objects.values_list("name", flat=True)[:20]) or "none"
            raise CommandError(f"no token named {name!r} (tokens: {known})")
        if not token.enabled:
            self.stderr.write(f"token {name!r} was already revoked")
            return
        token.enabled = False
        token.save(update_fields=["enabled"])
        self.stderr.write(f"revoked token {name!r}")
