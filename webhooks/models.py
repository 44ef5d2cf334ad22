from django.core.exceptions import ValidationError
from django.core.validators import MinValueValidator
from django.db import models

from common.validators import env_var_name

DEFAULT_MAX_BODY_BYTES = 1024 * 1024


class ChannelEndpoint(models.Model):
    """A chat platform that posts to `/hooks/<name>/`, parsed and answered through an adapter plugin."""

    class Auth(models.TextChoices):
        HMAC_SHA256 = "hmac_sha256", "X-Exoclaw-Signature: HMAC-SHA256 of <timestamp>.<body> (generic)"
        TELEGRAM = "telegram_secret_token", "X-Telegram-Bot-Api-Secret-Token header (Telegram)"
        SLACK = "slack_signature", "X-Slack-Signature: HMAC-SHA256 with the signing secret (Slack)"
        DISCORD = "discord_ed25519", "X-Signature-Ed25519 with the application's public key (Discord)"

    class SenderPolicy(models.TextChoices):
        OPEN = "open", "Open: anyone who can reach the bot"
        ALLOWLIST = "allowlist", "Allowlist: only the allowed senders"
        PAIRING = "pairing", "Pairing: allowed senders, and those an operator approved by pairing code"

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
        help_text="Name of the environment variable holding the webhook secret (never the secret itself): "
        "Slack's signing secret, Discord's application public key (hex). While it is unset, every "
        "request is refused.",
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
    sender_policy = models.CharField(
        max_length=16,
        choices=SenderPolicy.choices,
        default=SenderPolicy.PAIRING,
        help_text="Who may talk to the bot. Pairing: an unknown sender gets one short reply with a pairing "
        "code and no answer until an operator approves the code (here under Pairings, or with "
        "`python manage.py pair approve CODE`).",
    )
    allowed_senders = models.JSONField(
        default=list,
        blank=True,
        help_text="Platform user ids always allowed (Telegram user id, Slack user id U…, Discord user id), "
        "one per line. Used by the allowlist and pairing policies.",
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
        senders = self.allowed_senders
        if not isinstance(senders, list) or not all(isinstance(s, str) and s.strip() for s in senders):
            raise ValidationError({"allowed_senders": "Give a list of user ids (strings)."})
        if any(len(s) > 128 for s in senders):
            raise ValidationError({"allowed_senders": "A user id is at most 128 characters."})
        self.allowed_senders = list(dict.fromkeys(s.strip() for s in senders))
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
        REFUSED = "refused", "Refused: the sender may not talk to this bot"

    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.CASCADE, related_name="events")
    update_id = models.CharField(
        max_length=128, blank=True, help_text="The platform's id for this delivery; retries carry the same one."
    )
    account = models.CharField(max_length=128, blank=True)
    peer = models.CharField(max_length=128, blank=True)
    guild = models.CharField(max_length=128, blank=True)
    team = models.CharField(max_length=128, blank=True)
    sender = models.CharField(max_length=128, blank=True, help_text="The platform user id of who wrote the message.")
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
    # What the platform needs to answer (Discord's interaction token): a credential, kept only until
    # the event is finished and never shown.
    reply_ref = models.CharField(max_length=1024, blank=True, editable=False)

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


class Pairing(models.Model):
    """A sender who asked to talk to a bot under the pairing policy, and whether an operator agreed."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending: waiting for an operator"
        APPROVED = "approved", "Approved: may talk to the bot"
        REVOKED = "revoked", "Revoked: refused without a reply"

    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.CASCADE, related_name="pairings")
    sender = models.CharField(max_length=128, help_text="The platform user id.")
    code = models.CharField(max_length=16, unique=True, help_text="The code the sender was given.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created = models.DateTimeField(auto_now_add=True)
    decided = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True, help_text="Who approved or revoked it.")
    last_replied = models.DateTimeField(
        null=True, blank=True, help_text="When the sender was last sent the code (at most once an hour)."
    )

    class Meta:
        ordering = ["-created"]
        constraints = [models.UniqueConstraint(fields=["endpoint", "sender"], name="one_pairing_per_sender")]

    def __str__(self):
        return f"{self.code} ({self.endpoint} sender {self.sender}, {self.status})"


class SeenRequest(models.Model):
    """A signed webhook request already accepted, kept while its timestamp is fresh, so that a
    replay of the same bytes is refused."""

    endpoint = models.ForeignKey(ChannelEndpoint, on_delete=models.CASCADE, related_name="+")
    digest = models.CharField(max_length=64)
    expires = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["endpoint", "digest"], name="one_seen_request")]
