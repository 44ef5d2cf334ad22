"""Webhook authenticity: is this request from the platform? Pure functions, compared in constant time.

Each scheme is a function of (secret, headers, body) looked up in `SCHEMES` by the endpoint's `auth`
field, never by anything the request says.
"""

import hashlib
import hmac
from collections.abc import Mapping

SIGNATURE_HEADER = "X-Exoclaw-Signature"
TELEGRAM_HEADER = "X-Telegram-Bot-Api-Secret-Token"
SIGNATURE_PREFIX = "sha256="


def sign(secret: str, body: bytes) -> str:
    """The `X-Exoclaw-Signature` value for `body`: `sha256=` and the hex HMAC-SHA256 under `secret`."""
    return SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_hmac_sha256(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    given = headers.get(SIGNATURE_HEADER, "")
    # Hex digits are case-insensitive; compare_digest needs equal-length ASCII to stay constant-time.
    return hmac.compare_digest(given.strip().lower().encode(), sign(secret, body).encode())


def check_telegram_secret_token(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    return hmac.compare_digest(headers.get(TELEGRAM_HEADER, "").encode(), secret.encode())


SCHEMES = {
    "hmac_sha256": check_hmac_sha256,
    "telegram_secret_token": check_telegram_secret_token,
}


def is_authentic(scheme: str, secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """False for an unknown scheme or an empty secret: an endpoint without a secret accepts nothing."""
    check = SCHEMES.get(scheme)
    return bool(secret) and check is not None and check(secret, headers, body)
