"""API tokens, checked the same way for every way in that takes one: the gateway's handshake and
`auth` (`exoclaw/gateway/auth.py`), and the OpenAI-compatible HTTP API (`openai_api/`).

Only the SHA-256 of a token is stored (`exoclaw.models.ApiToken`); a presented token is hashed, looked
up, compared in constant time, and refused when it is unknown, disabled or expired. Each way in
translates `TokenRefused` into its own wire error (the gateway's 4401 / -32001, the API's HTTP 401).
Imports nothing of the gateway.

A gateway connection checks its token once, at the handshake, and then every
GATEWAY_TOKEN_RECHECK_SECONDS while it is open. An HTTP client presents its token with every request,
so `recent_token` answers from tokens checked within that same period: a revoked, disabled, expired
or deleted token stops working within it in every process (at once in the process that changed it),
as a gateway connection's does, and a request costs no database read and write of its own.
"""

import hmac

from channels.db import database_sync_to_async
from django.conf import settings
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from common.cache import TTLCache
from exoclaw.models import ApiToken, hash_token


class TokenRefused(Exception):
    """A presented token does not authenticate. `reason` is stable: token_invalid, token_disabled or
    token_expired; the message is for people."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def bearer_token(authorization: str) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None for any other form (each way in
    refuses that in its own words)."""
    kind, _, raw = authorization.strip().partition(" ")
    return raw.strip() if kind.lower() == "bearer" and raw.strip() else None


def refusal(row: ApiToken | None) -> TokenRefused | None:
    """Why a token row does not authenticate (gone, disabled or expired), or None."""
    if row is None:
        return TokenRefused("unknown token", "token_invalid")
    if not row.enabled:
        return TokenRefused("this token is disabled", "token_disabled")
    if row.is_expired():
        return TokenRefused("this token has expired", "token_expired")
    return None


@database_sync_to_async
def _checked_row(digest: str) -> ApiToken:
    """The token row of `digest`, its last use stamped, in one trip to the database's thread."""
    row = ApiToken.objects.filter(token_hash=digest).first()
    if row is not None and not hmac.compare_digest(row.token_hash, digest):
        row = None
    error = refusal(row)
    if error:
        raise error
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=timezone.now())
    return row


async def verify_token(raw: str) -> ApiToken:
    """The enabled, unexpired token row `raw` is the token of (its last use stamped); raises
    TokenRefused otherwise. EXOCLAW_TOKEN works only through the row `bootstrap` stored for it."""
    # Any text may arrive, lone surrogates included: it is hashed as given and simply matches nothing.
    return await _checked_row(hash_token(raw))


# Valid token rows by their hash, as checked within the last GATEWAY_TOKEN_RECHECK_SECONDS. Only
# valid tokens are kept, so guesses cannot grow it.
_checked: TTLCache[str, ApiToken] = TTLCache(1.0, max_entries=10_000)


async def recent_token(raw: str) -> ApiToken:
    """`verify_token`, answered from a check made within GATEWAY_TOKEN_RECHECK_SECONDS (its last use
    is stamped when the database is read, so at most that often)."""
    digest = hash_token(raw)
    _checked.ttl = settings.GATEWAY_TOKEN_RECHECK_SECONDS
    row, ticket = _checked.get(digest)
    if row is None or refusal(row) is not None:  # an entry may expire while it is kept
        row = await verify_token(raw)
        _checked.put(digest, row, ticket)
    return row


def forget_checked_tokens(**_kwargs) -> None:
    """Signal receiver: a token changed or was deleted in this process."""
    _checked.clear()
    # A request may read the old row between this save and its commit: clear again then.
    transaction.on_commit(_checked.clear)


# Connected here rather than in an AppConfig: every process that keeps checked tokens imports this module.
post_save.connect(forget_checked_tokens, sender=ApiToken, dispatch_uid="exoclaw-tokens-save")
post_delete.connect(forget_checked_tokens, sender=ApiToken, dispatch_uid="exoclaw-tokens-delete")
