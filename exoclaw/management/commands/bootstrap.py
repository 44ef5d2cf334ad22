import os
import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.models import Agent
from exoclaw.models import ApiToken, hash_token
from routing.models import Binding
from sandbox.samples import register_samples


class Command(BaseCommand):
    help = (
        "Create the demo set-up once: the 'demo' agent on the offline echo provider, the default binding, "
        "the sample plugins, an 'admin' superuser (password from EXOCLAW_ADMIN_PASSWORD, or generated and "
        "printed), and an API token for EXOCLAW_TOKEN. Safe to run again: existing rows are kept."
    )

    @transaction.atomic
    def handle(self, *args, **options):
        agent, created = Agent.objects.get_or_create(
            name="demo", defaults={"provider": Agent.Provider.ECHO, "tools": ["*"], "system_prompt": ""}
        )
        if created:
            self.stderr.write("created agent 'demo' (echo provider)")
        if not Binding.objects.filter(enabled=True, channel="", account="", peer="", guild="", team="").exists():
            Binding.objects.create(agent=agent, note="Default binding created by bootstrap")
            self.stderr.write("created the default binding → demo")
        register_samples(log=self.stderr.write)
        self._superuser()
        self._bootstrap_token()

    def _superuser(self):
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            return
        password = os.environ.get("EXOCLAW_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser("admin", "", password)
        shown = "from EXOCLAW_ADMIN_PASSWORD" if "EXOCLAW_ADMIN_PASSWORD" in os.environ else password
        self.stdout.write(f"created superuser 'admin', password: {shown}")

    def _bootstrap_token(self):
        if not settings.EXOCLAW_TOKEN:
            return
        ApiToken.objects.update_or_create(
            token_hash=hash_token(settings.EXOCLAW_TOKEN),
            defaults={"name": "EXOCLAW_TOKEN", "prefix": settings.EXOCLAW_TOKEN[:10], "scopes": ["admin"]},
        )
