import time

from django.core.management.base import CommandError

from agents.management.via_server import add_server_arguments, call_server
from agents.store import StoreError, StoreLocked, get_store, redact
from agents.store.schema import SCHEMA_VERSION
from common.commands import CommandWithExample


class Command(CommandWithExample):
    help = (
        "Apply the session store's schema (SurrealDB tables, fields, indexes) to SURREALDB_URL and\n"
        f"record its version (currently {SCHEMA_VERSION}). Safe to run any number of times; the store also\n"
        "applies it when it first opens. Works while the server runs: when it holds the embedded\n"
        "session store, the server applies it.\n\n"
        "Example: python manage.py surreal_migrate"
    )

    def add_arguments(self, parser):
        add_server_arguments(parser)

    def handle(self, *args, url, token, **options):
        store = get_store()
        started = time.perf_counter()
        self.stderr.write(f"Applying the session store schema to {redact(store.url)} …")
        try:
            result = store.sync.migrate()
        except StoreLocked as held:
            result = call_server(self, "store.migrate", {}, held, url=url, token=token)
        except StoreError as e:
            raise CommandError(str(e)) from None
        self.stderr.write(f"Done in {(time.perf_counter() - started) * 1000:.0f} ms.")
        if result["changed"]:
            was = "an empty store" if result["from"] is None else f"version {result['from']}"
            self.stdout.write(f"schema version {result['to']} applied (was {was})")
        else:
            self.stdout.write(f"schema version {result['to']} already applied, nothing changed")
