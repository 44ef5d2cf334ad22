import hashlib
import secrets

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

TOKEN_PREFIX = "exo_"


def hash_token(raw: str) -> str:
    # Tokens are 256-bit random strings, so a fast hash is enough; the point is that a leaked
    # database does not reveal usable tokens.
    # surrogatepass: whatever a client sent hashes to something, which simply matches no token.
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


class ApiToken(models.Model):
    class Scope(models.TextChoices):
        CHAT = "chat", "chat: send messages, abort and subscribe to runs"
        SESSIONS_READ = "sessions:read", "sessions:read: list and read sessions"
        SESSIONS_WRITE = "sessions:write", "sessions:write: reset sessions"
        METRICS = "metrics", "metrics: scrape GET /metrics"
        TOOLS = "tools", "tools: list and call the permitted plugins' tools over MCP (/mcp)"
        ADMIN = "admin", "admin: every method"

    name = models.CharField(
        max_length=100, unique=True,
        help_text="Who or what uses this token; its conversations belong to token:<name>.",
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    prefix = models.CharField(max_length=12, editable=False, help_text="First characters, to recognise a token.")
    scopes = models.JSONField(default=list, blank=True)
    channels = models.JSONField(
        default=list, blank=True,
        help_text='Webhook channels this token may post in as the platform (a bridge), e.g. ["telegram"]; '
        '"*" for every one. Empty: only its own conversations.',
    )
    agents = models.JSONField(
        default=list, blank=True,
        help_text='Agents this token may name directly instead of letting routing choose, e.g. ["helper"]; '
        '"*" for every one. Empty: routing decides.',
    )
    plugins = models.JSONField(
        default=list, blank=True,
        help_text='Plugins whose tools this token sees over MCP (/mcp, with the tools scope), e.g. ["calc"]; '
        '"*" for every one. Empty: none.',
    )
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

    def clean(self):
        for field in ("channels", "agents", "plugins"):
            value = getattr(self, field)
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValidationError({field: 'Give a list of names, e.g. ["telegram"], or ["*"] for all.'})

    def is_expired(self, now=None) -> bool:
        return self.expires_at is not None and self.expires_at <= (now or timezone.now())
