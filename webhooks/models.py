from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from common.validators import env_var_name

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class ChannelEndpoint(models.Model):
    """A chat platform that posts to `/hooks/<name>/`, parsed and answered through an adapter plugin."""

    class Auth(models.TextChoices):
        HMAC_SHA256 = "hmac_sha256", "X-Exoclaw-Signature: sha256=<HMAC-SHA256 of the body> (generic)"
        TELEGRAM = "telegram_secret_token", "X-Telegram-Bot-Api-Secret-Token header (Telegram)"

    name = models.SlugField(
        unique=True,
        help_text="The channel name: the webhook URL is /hooks/<name>/ and bindings match it as their channel.",
    )
    adapter = models.ForeignKey(
        "sandbox.Plugin",
        on_delete=models.PROTECT,
        related_name="channel_endpoints",
        help_text="The channel-adapter plugin that parses what the platform sends and formats the replies.",
    )
    auth = models.CharField(
        max_length=32,
        choices=Auth.choices,
        default=Auth.HMAC_SHA256,
        help_text="How a request proves it comes from the platform. Anything that fails this gets 401.",
    )
    secret_env = models.CharField(
        max_length=128,
        validators=[env_var_name],
        help_text="Name of the environment variable holding the webhook secret (never the secret itself). "
        "While it is unset, every request is refused.",
    )
    account = models.CharField(
        max_length=128,
        blank=True,
        help_text="Account name bindings match (e.g. the bot's username), used when the adapter reports none.",
    )
    api_base_url = models.URLField(
        blank=True,
        help_text="Where replies go, e.g. https://api.telegram.org. Empty: replies are kept, not sent.",
    )
    token_env = models.CharField(
        max_length=128,
        blank=True,
        validators=[env_var_name],
        help_text="Name of the environment variable holding the platform's API token (filled into {token} "
        "in the adapter's request path; the adapter never sees it).",
    )
    max_body_bytes = models.PositiveIntegerField(
        default=DEFAULT_MAX_BODY_BYTES,
        validators=[MinValueValidator(1)],
        help_text="Larger request bodies get 413.",
    )
    enabled = models.BooleanField(default=True)
    created = models.DateTimeField(auto_now_add=True)
    updated = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "channel endpoint"

    def __str__(self):
        return self.name

    def clean(self):
        # abi is set by tool discovery; an undiscovered plugin gets the benefit of the doubt.
        adapter = self.adapter if self.adapter_id else None
        if adapter is not None and adapter.abi and adapter.abi != adapter.Abi.CHANNEL_ADAPTER:
            raise ValidationError(
                {"adapter": f"{adapter.name} is a tool plugin ({adapter.get_abi_display()}), not a channel adapter."}
            )


class InboundEvent(models.Model):
    """One accepted webhook message: the persistent dedupe record and what became of it.

    The message text lives in the session store; this row keeps it only until the event is finished,
    so that another process can take the event over if the one handling it stops.
    """

    class Status(models.TextChoices):
        ACCEPTED = "accepted", "Accepted; the agent is on it"
        REPLIED = "replied", "Reply delivered"
        NO_REPLY = "no_reply", "Run finished without a reply to send"
        FAILED = "failed", "Run failed"
        UNDELIVERED = "undelivered", "Reply could not be delivered"

    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.CASCADE, related_name="events")
    update_id = models.CharField(
        max_length=128, blank=True, help_text="The platform's id for this delivery; retries carry the same one."
    )
    account = models.CharField(max_length=128, blank=True)
    peer = models.CharField(max_length=128, blank=True)
    guild = models.CharField(max_length=128, blank=True)
    team = models.CharField(max_length=128, blank=True)
    message_id = models.CharField(max_length=128, blank=True)
    agent = models.CharField(max_length=64, blank=True)
    session_key = models.CharField(max_length=512, blank=True)
    run_id = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACCEPTED)
    error = models.TextField(blank=True)
    delivery_attempts = models.PositiveSmallIntegerField(default=0)
    received = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)
    # While the event is unfinished: its message text, and which process handles it until when, so
    # that another process can take it over if that one stops. Cleared when the event is finished.
    content = models.TextField(blank=True, editable=False)
    owner = models.CharField(max_length=128, blank=True, editable=False)
    lease_until = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-received"]
        indexes = [
            # Every process serving /hooks/ looks for lapsed leases a few times a minute.
            models.Index(fields=["lease_until"], condition=models.Q(status="accepted"), name="accepted_by_lease"),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["endpoint", "update_id"],
                condition=~models.Q(update_id=""),
                name="one_event_per_update_id",
            )
        ]

    def __str__(self):
        return f"{self.endpoint} {self.update_id or self.pk} ({self.status})"
