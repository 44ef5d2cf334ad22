from django.core.management.base import CommandError

from common.commands import CommandWithExample
from webhooks import senders
from webhooks.models import Pairing

OPERATOR = "manage.py pair"


class Command(CommandWithExample):
    help = (
        "Pairing codes of senders who asked to talk to a bot (channels with sender_policy = \"pairing\").\n"
        "An unknown sender gets a code and no answer; approving the code lets that sender talk to the\n"
        "bot from then on, revoking it refuses the sender without a reply. See docs/channels.md.\n\n"
        "Examples:\n"
        "  python manage.py pair list\n"
        "  python manage.py pair approve K7QX-M2PD\n"
        "  python manage.py pair revoke K7QX-M2PD"
    )

    def add_arguments(self, parser):
        sub = parser.add_subparsers(
            dest="action", required=True, metavar="{list,approve,revoke}", help="what to do (each has its own --help)"
        )
        listing = sub.add_parser("list", help="show pairings, pending ones first")
        listing.add_argument("--all", action="store_true", help="also approved and revoked pairings")
        listing.add_argument("--channel", help="only this channel endpoint (its name)")
        for name, what in (("approve", "let the sender talk to the bot"), ("revoke", "refuse the sender from now on")):
            action = sub.add_parser(name, help=f"{what}, by the code they were given")
            action.add_argument("code", help="the pairing code, e.g. K7QX-M2PD (case and dash do not matter)")

    def handle(self, *args, action, **options):
        if action == "list":
            return self._list(options["all"], options.get("channel"))
        pairing = Pairing.objects.select_related("endpoint").filter(code=senders.normalize_code(options["code"])).first()
        if pairing is None:
            raise CommandError(f"no pairing with code {options['code']!r}; `python manage.py pair list` shows them")
        where = f"sender {pairing.sender} on channel {pairing.endpoint.name}"
        if action == "approve":
            if pairing.status == Pairing.Status.APPROVED:
                self.stdout.write(f"{pairing.code} was already approved: {where} may talk to the bot")
                return
            senders.approve(pairing, OPERATOR)
            self.stdout.write(f"approved {pairing.code}: {where} may talk to the bot from now on")
        else:
            if pairing.status == Pairing.Status.REVOKED:
                self.stdout.write(f"{pairing.code} was already revoked")
                return
            senders.revoke(pairing, OPERATOR)
            self.stdout.write(f"revoked {pairing.code}: {where} is refused from now on, without a reply")

    def _list(self, everything: bool, channel: str | None):
        rows = Pairing.objects.select_related("endpoint").order_by("status", "-created")
        if not everything:
            rows = rows.filter(status=Pairing.Status.PENDING)
        if channel:
            rows = rows.filter(endpoint__name=channel)
        rows = list(rows)
        if not rows:
            self.stderr.write("no pending pairings" if not everything else "no pairings")
            return
        self.stdout.write(f"{'CODE':<10} {'CHANNEL':<16} {'SENDER':<24} {'STATUS':<9} ASKED")
        for p in rows:
            self.stdout.write(
                f"{p.code:<10} {p.endpoint.name:<16} {p.sender:<24} {p.status:<9} {p.created:%Y-%m-%d %H:%M}"
            )
