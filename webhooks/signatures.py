"""Webhook authenticity: is this request from the platform, and is it fresh? Pure functions,
compared in constant time.

Each scheme is a function of (secret, headers, body, now) looked up in `SCHEMES` by the endpoint's
`auth` field, never by anything the request says. It returns the signed timestamp ("" for Telegram's
static secret token, which signs none) or raises `Unauthentic` with a stable `reason`; `authenticate`
turns that into the request's **replay key**, a digest of the timestamp and the body. The view records replay keys, so a signed request is accepted
once (`webhooks.replay`).

- `hmac_sha256` (the generic webhook): `X-Exoclaw-Timestamp: <unix seconds>` and
  `X-Exoclaw-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`, as Stripe signs.
- `slack_signature`: `X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<X-Slack-Request-Timestamp>:<body>">`.
- `discord_ed25519`: `X-Signature-Ed25519: <hex signature>` over `<X-Signature-Timestamp><body>`,
  checked with the application's public key (hex) by `cryptography`.
- `telegram_secret_token`: `X-Telegram-Bot-Api-Secret-Token` equals the secret.

Timestamps more than `MAX_AGE` seconds away from now (past or future) are refused.

Replies exoclaw signs (`sign_reply`) use another header and another signed string
(`X-Exoclaw-Reply-Signature` over `"reply.<timestamp>.<body>"`), so a reply posted back to exoclaw is
never mistaken for an inbound request, even under the same secret.
"""

import hashlib
import hmac
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

MAX_AGE = 300  # seconds: Slack's and Stripe's five minutes

SIGNATURE_HEADER = "X-Exoclaw-Signature"
TIMESTAMP_HEADER = "X-Exoclaw-Timestamp"
REPLY_SIGNATURE_HEADER = "X-Exoclaw-Reply-Signature"
REPLY_TIMESTAMP_HEADER = "X-Exoclaw-Reply-Timestamp"
SIGNATURE_PREFIX = "sha256="
TELEGRAM_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SLACK_SIGNATURE_HEADER = "X-Slack-Signature"
SLACK_TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
DISCORD_SIGNATURE_HEADER = "X-Signature-Ed25519"
DISCORD_TIMESTAMP_HEADER = "X-Signature-Timestamp"


class Unauthentic(Exception):
    """The request does not prove it comes from the platform. `reason` is one of `no_secret`,
    `missing`, `bad_signature`, `stale` (or from the future), `replayed`; the message says what to fix
    without echoing anything secret."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _same(given: str, expected: str) -> bool:
    # Hex digits are case-insensitive; compare_digest needs ASCII to stay constant-time.
    return hmac.compare_digest(given.strip().lower().encode("ascii", "replace"), expected.encode())


def _timestamp(headers: Mapping[str, str], name: str, now: float) -> str:
    value = headers.get(name, "").strip()
    if not value:
        raise Unauthentic("missing", f"The {name} header is missing.")
    try:
        seconds = int(value)
    except ValueError:
        raise Unauthentic("missing", f"The {name} header must be a Unix time in seconds.") from None
    if abs(now - seconds) > MAX_AGE:
        raise Unauthentic("stale", f"The {name} is more than {MAX_AGE // 60} minutes away from the server's clock.")
    return value


def sign(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `X-Exoclaw-Signature` value for a request to exoclaw sent at `timestamp`."""
    return SIGNATURE_PREFIX + _hmac_hex(secret, f"{timestamp}.".encode() + body)


def signed_headers(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """The two headers a sender puts on a generic webhook request."""
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def sign_reply(secret: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The headers on a reply exoclaw sends: another header and signed string than the inbound ones."""
    signature = SIGNATURE_PREFIX + _hmac_hex(secret, f"reply.{timestamp}.".encode() + body)
    return {REPLY_TIMESTAMP_HEADER: str(timestamp), REPLY_SIGNATURE_HEADER: signature}


def check_hmac_sha256(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    given = headers.get(SIGNATURE_HEADER, "")
    if not given:
        raise Unauthentic("missing", f"The {SIGNATURE_HEADER} header is missing.")
    timestamp = _timestamp(headers, TIMESTAMP_HEADER, now)
    if not _same(given, sign(secret, timestamp, body)):
        raise Unauthentic("bad_signature", f"The {SIGNATURE_HEADER} does not match the timestamp and body.")
    return timestamp


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    return "v0=" + _hmac_hex(secret, f"v0:{timestamp}:".encode() + body)


def check_slack_signature(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    given = headers.get(SLACK_SIGNATURE_HEADER, "")
    if not given:
        raise Unauthentic("missing", f"The {SLACK_SIGNATURE_HEADER} header is missing.")
    timestamp = _timestamp(headers, SLACK_TIMESTAMP_HEADER, now)
    if not _same(given, slack_signature(secret, timestamp, body)):
        raise Unauthentic("bad_signature", f"The {SLACK_SIGNATURE_HEADER} does not match the timestamp and body.")
    return timestamp


def discord_public_key(secret: str) -> Ed25519PublicKey:
    """The application's public key from its hex form (the Developer Portal's "Public Key")."""
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(secret.strip()))
    except ValueError:
        raise Unauthentic("no_secret", "The channel's public key is not 32 bytes of hex; fix its variable.") from None


def check_discord_ed25519(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    key = discord_public_key(secret)
    given = headers.get(DISCORD_SIGNATURE_HEADER, "").strip()
    if not given:
        raise Unauthentic("missing", f"The {DISCORD_SIGNATURE_HEADER} header is missing.")
    timestamp = _timestamp(headers, DISCORD_TIMESTAMP_HEADER, now)
    try:
        key.verify(bytes.fromhex(given), timestamp.encode() + body)
    except (ValueError, InvalidSignature):
        raise Unauthentic("bad_signature", f"The {DISCORD_SIGNATURE_HEADER} does not verify.") from None
    return timestamp


def check_telegram_secret_token(secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    if not hmac.compare_digest(headers.get(TELEGRAM_HEADER, "").encode("utf-8", "replace"), secret.encode()):
        raise Unauthentic("bad_signature", f"The {TELEGRAM_HEADER} header is missing or wrong.")
    # A static token says nothing about freshness: Telegram's update ids deduplicate instead.
    return ""


SCHEMES = {
    "hmac_sha256": check_hmac_sha256,
    "slack_signature": check_slack_signature,
    "discord_ed25519": check_discord_ed25519,
    "telegram_secret_token": check_telegram_secret_token,
}


def authenticate(scheme: str, secret: str, headers: Mapping[str, str], body: bytes, now: float) -> str:
    """The request's replay key (a digest of its signed timestamp and body; "" when the scheme signs
    no timestamp), or raise Unauthentic. An unknown scheme or an empty secret accepts nothing."""
    check = SCHEMES.get(scheme)
    if not secret or check is None:
        raise Unauthentic("no_secret", "The channel has no secret configured, so it accepts nothing.")
    timestamp = check(secret, headers, body, now)
    return hashlib.sha256(f"{timestamp}.".encode() + body).hexdigest() if timestamp else ""
