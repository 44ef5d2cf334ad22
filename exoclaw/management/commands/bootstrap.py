import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from agents.models import Agent
from common.commands import CommandWithExample, invoked_as_exoclaw
from exoclaw.models import ApiToken, hash_token
from routing.models import Binding
from sandbox.samples import register_samples

BOOTSTRAP_TOKEN_NAME = "EXOCLAW_TOKEN"


def change_password() -> str:
    return "exoclaw changepassword" if invoked_as_exoclaw() else ".venv/bin/python manage.py changepassword"


def boxed(lines: list[str]) -> str:
    """Lines in a box, so a one-time secret stands out of `make run`'s output."""
    width = max(len(line) for line in lines)
    rule = "─" * (width + 2)
    return "\n".join([f"┌{rule}┐", *(f"│ {line.ljust(width)} │" for line in lines), f"└{rule}┘"])


class Command(CommandWithExample):
    help = (
        "Create the demo set-up once: the 'demo' agent on the offline echo provider, the default\n"
        "binding, the sample plugins, an 'admin' superuser (password from EXOCLAW_ADMIN_PASSWORD,\n"
        "or generated and printed), and an API token for EXOCLAW_TOKEN.\n"
        "Safe to run again: existing rows are kept.\n\n"
        "Example: EXOCLAW_ADMIN_PASSWORD=s3cret-pass python manage.py bootstrap"
    )

    @transaction.atomic
    def handle(self, *args, **options):
        agent = self._demo_agent()
        self._default_binding(agent)
        register_samples(log=self._say)
        self._superuser()
        self._bootstrap_token()

    def _say(self, message):
        self.stderr.write(f"bootstrap: {message}")

    def _demo_agent(self):
        agent, created = Agent.objects.get_or_create(
            name="demo", defaults={"provider": Agent.Provider.ECHO, "tools": ["*"], "system_prompt": ""}
        )
        self._say("created agent 'demo' (echo provider)" if created else "agent 'demo' exists, kept")
        return agent

    def _default_binding(self, agent):
        existing = Binding.objects.filter(enabled=True, channel="", account="", peer="", guild="", team="")
        default = existing.select_related("agent").first()
        if default:
            self._say(f"default binding exists (→ {default.agent}), kept")
            return
        Binding.objects.create(agent=agent, note="Default binding created by bootstrap")
        self._say(f"created the default binding → {agent}")

    def _superuser(self):
        User = get_user_model()
        existing = User.objects.filter(is_superuser=True).order_by("pk").first()
        if existing is not None:
            name = existing.get_username()
            self._say(f"a superuser exists, kept (its password is not changed; lost it? "
                      f"{change_password()} {name})")
            return
        from_env = os.environ.get("EXOCLAW_ADMIN_PASSWORD", "")
        password = from_env or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        if from_env:
            self.stdout.write("created superuser 'admin', password: from EXOCLAW_ADMIN_PASSWORD")
            return
        self.stdout.write(boxed([
            f"created superuser 'admin', password: {password}",
            f"sign in at http://{settings.EXOCLAW_BIND}/admin/ (the password is shown only this once)",
            f"lost it? {change_password()} admin",
        ]))

    def _bootstrap_token(self):
        # One row, found by its name, holds the hash of the current EXOCLAW_TOKEN: changing the
        # variable replaces the old token instead of leaving it valid next to the new one.
        raw = settings.EXOCLAW_TOKEN
        row = ApiToken.objects.filter(name=BOOTSTRAP_TOKEN_NAME).first()
        if not raw:
            if row and row.enabled:
                self._say(
                    f"EXOCLAW_TOKEN is unset but the API token '{BOOTSTRAP_TOKEN_NAME}' from an earlier run "
                    "still works; revoke it in the admin if that is not what you want"
                )
            return
        if row is None:
            ApiToken.objects.create(
                name=BOOTSTRAP_TOKEN_NAME, token_hash=hash_token(raw), prefix=raw[:10], scopes=["admin"]
            )
            self._say(f"created API token '{BOOTSTRAP_TOKEN_NAME}' (scope admin) for EXOCLAW_TOKEN")
        elif row.token_hash != hash_token(raw):
            row.token_hash, row.prefix = hash_token(raw), raw[:10]
            row.save(update_fields=["token_hash", "prefix"])
            self._say(f"EXOCLAW_TOKEN changed: API token '{BOOTSTRAP_TOKEN_NAME}' now holds the new one")
        else:
            state = "kept" if row.enabled else "kept revoked (re-enable it in the admin)"
            self._say(f"API token '{BOOTSTRAP_TOKEN_NAME}' matches EXOCLAW_TOKEN, {state}")
