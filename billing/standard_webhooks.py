"""Standard Webhooks signing (https://www.standardwebhooks.com): the scheme the engine signs its
outbound notifications with, so tenants can verify them with any Standard Webhooks library.

signature = "v1," + base64(HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}")), where `key` is the
base64 text after the `whsec_` prefix of the secret, decoded.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"
SIGNATURE_VERSION = "v1"


class SignatureError(ValueError):
    """The signature, timestamp or secret does not verify."""


def new_secret() -> str:
    """A fresh `whsec_` secret (24 random bytes, as the reference libraries generate)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def _key(secret: str) -> bytes:
    raw = secret.removeprefix(SECRET_PREFIX)
    try:
        return base64.b64decode(raw, validate=True)
    except ValueError as exc:
        raise SignatureError("the secret is not base64 after the whsec_ prefix") from exc


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


@dataclass(frozen=True)
class SignedHeaders:
    webhook_id: str
    webhook_timestamp: str
    webhook_signature: str

    def as_dict(self) -> dict[str, str]:
        return {
            "webhook-id": self.webhook_id,
            "webhook-timestamp": self.webhook_timestamp,
            "webhook-signature": self.webhook_signature,
        }


def signed_headers(secret: str, msg_id: str, timestamp: int, body: bytes) -> SignedHeaders:
    return SignedHeaders(msg_id, str(timestamp), sign(secret, msg_id, timestamp, body))


def verify(
    secret: str,
    headers: SignedHeaders,
    body: bytes,
    *,
    now: int,
    tolerance_seconds: int = 300,
) -> None:
    """Raise SignatureError unless one of the space-separated `v1,` signatures matches and the
    timestamp is within the tolerance of `now` (what a receiver does)."""
    try:
        timestamp = int(headers.webhook_timestamp)
    except ValueError as exc:
        raise SignatureError("webhook-timestamp is not an integer") from exc
    if abs(now - timestamp) > tolerance_seconds:
        raise SignatureError("webhook-timestamp is outside the tolerance")
    expected = sign(secret, headers.webhook_id, timestamp, body).split(",", 1)[1]
    for candidate in headers.webhook_signature.split():
        version, _, value = candidate.partition(",")
        if version == SIGNATURE_VERSION and hmac.compare_digest(value, expected):
            return
    raise SignatureError("no matching v1 signature")
