import hashlib
import secrets

from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "exo_"


def hash_token(raw: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough; the point is that a leaked
    # database does not reveal usable tokens.
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        CHAT = "chat", "chat: send messages, abort and subscribe to runs"
        SESSIONS_READ = "sessions:read", "sessions:read: list and read sessions"
        SESSIONS_WRITE = "sessions:write", "sessions:write: reset sessions"
        METRICS = "metrics", "metrics: scrape GET /metrics"
        ADMIN = "admin", "admin: every method"

    name = models.CharField(max_length=100, help_text="Who or what uses this token.")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a token.")
    scopes = models.JSONField(default=list, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True, help_text="Empty: never expires.")
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "API token"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    def set_new_token(self) -> str:
        """Give this row a fresh random token and return it: the only moment the raw token exists."""
        raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
        self.token_hash = hash_token(raw)
        self.prefix = raw[:10]
        return raw

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
