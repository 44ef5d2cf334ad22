"""Who may talk to a bot: each channel endpoint's sender policy, and pairing codes.

- `open`: everyone.
- `allowlist`: the endpoint's `allowed_senders` (platform user ids); anyone else is refused silently.
- `pairing`: the allowed senders and every sender an operator approved. An unknown sender is given a
  pairing code (one short reply, no run); the operator approves it in the admin or with
  `python manage.py pair approve CODE`, and the sender is allowed from then on.

Every refused message is recorded as a `refused` inbound event. Replies to refused senders are rate
limited: a pending sender is sent its code at most once per `REPLY_INTERVAL`, a revoked one never,
and no more than `MAX_PENDING` senders per endpoint wait at once (more get no code and no reply).
"""

import secrets
from dataclasses import dataclass
from datetime import timedelta

from django.db import IntegrityError
from django.db.models import Q
from django.utils import timezone

from .models import ChannelEndpoint, Pairing

REPLY_INTERVAL = timedelta(hours=1)
MAX_PENDING = 100
# Pending pairings older than this no longer count against MAX_PENDING (they can still be approved).
PENDING_WINDOW = timedelta(days=1)
# No 0/O, 1/I/L: codes are read aloud and retyped.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"

Policy = ChannelEndpoint.SenderPolicy


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reason: str = ""
    # The pairing whose code the sender may be sent (when a reply is due), else None.
    pairing: Pairing | None = None


def new_code() -> str:
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    return f"{raw[:4]}-{raw[4:]}"


def normalize_code(text: str) -> str:
    """What an operator typed → the stored form: `k7qx m2pd`, `K7QXM2PD` → `K7QX-M2PD`."""
    raw = "".join(c for c in text.upper() if c.isalnum())
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else text.strip().upper()


def pairing_reply(code: str) -> str:
    return (
        f"This bot answers only people its operator has approved. Your pairing code is {code}: "
        "send it to the operator, and write again once it is approved."
    )


def listed(endpoint: ChannelEndpoint, sender: str) -> bool:
    return bool(sender) and sender in (endpoint.allowed_senders or [])


async def decide(endpoint: ChannelEndpoint, sender: str) -> Decision:
    """May `sender` talk to the bot behind `endpoint`? Creates a pending pairing for a new sender
    under the pairing policy."""
    policy = endpoint.sender_policy
    if policy == Policy.OPEN:
        return Decision(True)
    if not sender:
        return Decision(False, "the adapter reported no sender, so the sender policy refuses the message")
    if listed(endpoint, sender):
        return Decision(True)
    if policy != Policy.PAIRING:
        return Decision(False, f"sender {sender} is not on the allowlist")
    pairing = await Pairing.objects.filter(endpoint=endpoint, sender=sender).afirst()
    if pairing is None:
        pairing = await _new_pairing(endpoint, sender)
        if pairing is None:
            return Decision(False, f"sender {sender} is unknown, and {MAX_PENDING} pairings are already pending")
    if pairing.status == Pairing.Status.APPROVED:
        return Decision(True)
    if pairing.status == Pairing.Status.REVOKED:
        return Decision(False, f"sender {sender}'s pairing {pairing.code} was revoked")
    return Decision(False, f"sender {sender} is waiting for pairing {pairing.code} to be approved", pairing)


async def _new_pairing(endpoint: ChannelEndpoint, sender: str) -> Pairing | None:
    recent = Pairing.objects.filter(
        endpoint=endpoint, status=Pairing.Status.PENDING, created__gte=timezone.now() - PENDING_WINDOW
    )
    if await recent.acount() >= MAX_PENDING:
        return None
    for _ in range(5):
        try:
            return await Pairing.objects.acreate(endpoint=endpoint, sender=sender, code=new_code())
        except IntegrityError:
            # Another request created this sender's pairing meanwhile, or the code was taken.
            existing = await Pairing.objects.filter(endpoint=endpoint, sender=sender).afirst()
            if existing is not None:
                return existing
    raise RuntimeError("could not draw an unused pairing code")


async def claim_reply(pairing: Pairing) -> bool:
    """Whether to send `pairing`'s code now: at most once per REPLY_INTERVAL, decided in one
    conditional update, so concurrent messages from one sender (in any process) get one reply."""
    now = timezone.now()
    due = Q(last_replied__isnull=True) | Q(last_replied__lt=now - REPLY_INTERVAL)
    return bool(
        await Pairing.objects.filter(due, pk=pairing.pk, status=Pairing.Status.PENDING).aupdate(last_replied=now)
    )


def approve(pairing: Pairing, by: str) -> None:
    pairing.status, pairing.decided, pairing.decided_by = Pairing.Status.APPROVED, timezone.now(), by
    pairing.save(update_fields=["status", "decided", "decided_by"])


def revoke(pairing: Pairing, by: str) -> None:
    pairing.status, pairing.decided, pairing.decided_by = Pairing.Status.REVOKED, timezone.now(), by
    pairing.save(update_fields=["status", "decided", "decided_by"])
