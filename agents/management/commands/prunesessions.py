import time

from django.core.management.base import CommandError

from agents.management.via_server import add_server_arguments, call_server
from agents.store import InvalidInput, StoreError, StoreLocked, get_store
from agents.store.shapes import parse_age
from common.commands import CommandWithExample


class Command(CommandWithExample):
    help = (
        "Delete sessions (with their messages and runs) that have been idle for longer than\n"
        "--older-than. Prints what was (or, with --dry-run, would be) deleted. Works while the\n"
        "server runs: when it holds the embedded session store, the server does the pruning.\n\n"
        "Example: python manage.py prunesessions --older-than 30d --dry-run"
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--older-than", required=True, metavar="AGE",
            help="idle age: a number and a unit s, m, h, d or w, e.g. 30d or 12h",
        )
        parser.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")
        add_server_arguments(parser)

    def handle(self, *args, older_than, dry_run, url, token, **options):
        try:
            age = parse_age(older_than.strip())
        except InvalidInput as e:
            raise CommandError(f"--older-than: {e}") from None
        started = time.perf_counter()
        self.stderr.write(f"{'Counting' if dry_run else 'Pruning'} sessions idle for more than {older_than.strip()} …")
        try:
            counts = get_store().sync.prune(age, dry_run=dry_run)
        except StoreLocked as held:
            params = {"older_than": older_than.strip(), "dry_run": dry_run}
            counts = call_server(self, "sessions.prune", params, held, url=url, token=token)
        except StoreError as e:
            raise CommandError(str(e)) from None
        self.stderr.write(f"Done in {time.perf_counter() - started:.2f} s.")
        verb = "would delete" if dry_run else "deleted"
        self.stdout.write(f"{verb} " + ", ".join(counted(counts[k + "s"], k) for k in ("session", "message", "run")))


def counted(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
