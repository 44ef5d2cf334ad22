import json

from django.core.management.base import CommandError

from common.commands import CommandWithExample
from common.doctor import HIGH, SEVERITIES
from exoclaw.doctor import diagnose


class Command(CommandWithExample):
    help = (
        "Check this deployment for exoclaw's own risks: DEBUG, the secret key, ALLOWED_HOSTS, loopback\n"
        "trust, stores shared by several processes, API tokens, plugin grants and their secrets, webhook\n"
        "channels. Each finding has an id, a severity (high, medium, low) and the fix; docs/deploy.md\n"
        "lists them. Run it with the environment the server runs with. Exit status 1 when a finding is high.\n\n"
        "Examples:\n"
        "  python manage.py doctor\n"
        "  exoclaw doctor --bind 0.0.0.0:7200 --json"
    )

    def add_arguments(self, parser):
        parser.add_argument("--bind", default=None, help="judge serving on this HOST:PORT (default: EXOCLAW_BIND)")
        parser.add_argument("--json", dest="as_json", action="store_true", help='print {"findings": [{id, severity, message, fix}]}')

    def handle(self, *args, bind, as_json, **options):
        found = diagnose(bind)
        counts = {s: sum(f.severity == s for f in found) for s in SEVERITIES}
        if as_json:
            self.stdout.write(json.dumps({"findings": [f.as_json() for f in found], "counts": counts}, indent=2))
        for f in found if not as_json else ():
            self.stdout.write(f"{f.severity.upper():<7}{f.id}: {f.message}.")
            self.stdout.write(f"       fix: {f.fix}")
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "nothing to report"
        self.stderr.write(f"doctor: {len(found)} finding{'s' * (len(found) != 1)} ({summary})" if found
                          else "doctor: nothing to report")
        if counts[HIGH]:
            raise CommandError(f"{counts[HIGH]} high finding{'s' * (counts[HIGH] != 1)}: fix {'it' if counts[HIGH] == 1 else 'them'} before serving")

