from django.core.exceptions import ValidationError
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from django.utils import timezone

from common.commands import CommandWithExample
from common.durations import parse_duration
from exoclaw.models import ApiToken


class Command(CommandWithExample):
    help = (
        "Create an API token and print it, alone, on stdout: the only time it is shown (only its hash\n"
        "is stored). Its conversations belong to token:NAME. --channel lets it post in a webhook\n"
        "channel as the platform (a bridge); --agent lets it name an agent instead of routing;\n"
        "--plugin lets it see that plugin's tools over MCP (/mcp, with --scope tools).\n\n"
        "Example: python manage.py createtoken alice-laptop --scope chat --expires 30d\n"
        "Example: python manage.py createtoken tg-bridge --scope chat --channel telegram --agent helper\n"
        "Example: python manage.py createtoken claude-desktop --scope tools --plugin calc --plugin echo"
    )

    def add_arguments(self, parser):
        parser.add_argument("name", help="who or what uses the token (unique)")
        parser.add_argument("--scope", action="append", required=True, choices=ApiToken.Scope.values,
                            help="what it may do over the gateway; repeat for several")
        parser.add_argument("--channel", action="append", default=[],
                            help="a webhook channel it may post in as the platform ('*': every one); repeat")
        parser.add_argument("--agent", action="append", default=[],
                            help="an agent it may name directly ('*': every one); repeat")
        parser.add_argument("--plugin", action="append", default=[],
                            help="a plugin whose tools it sees over MCP ('*': every one); repeat")
        parser.add_argument("--expires", metavar="DURATION",
                            help="lifetime, a number and a unit s, m, h, d or w (e.g. 30d); default: never")

    def handle(self, *args, name, scope, channel, agent, plugin, expires, **options):
        taken = f"a token named {name!r} exists already; pick another name or revoke that one"
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(taken)
        token = ApiToken(name=name, scopes=sorted(set(scope)), channels=channel, agents=agent,
                         plugins=plugin)
        if expires:
            try:
                token.expires_at = timezone.now() + parse_duration(expires)
            except ValueError as e:
                raise CommandError(f"--expires: {e}") from None
        raw = token.set_new_token()
        try:
            token.full_clean(exclude=["token_hash", "prefix"])
            with transaction.atomic():
                token.save()
        except ValidationError as e:
            raise CommandError("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in e.message_dict.items())) from None
        except IntegrityError:  # made meanwhile by someone else
            raise CommandError(taken) from None
        until = f"until {token.expires_at:%Y-%m-%d %H:%M %Z}" if token.expires_at else "without expiry"
        self.stderr.write(f"created token {name!r} ({', '.join(token.scopes)}) {until}; copy it now, it is not shown again")
        self.stdout.write(raw)
