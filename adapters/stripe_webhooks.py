"""Verifying Stripe's `Stripe-Signature` header with the SDK, trying every configured secret
(rotation: the old and the new endpoint secret are both accepted while both are configured)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import stripe


class WebhookRejected(ValueError):
    """The request is not a verified Stripe event; the message says why (safe to return), and
    `code` is the error code of the 400 answer."""

    def __init__(self, message: str, *, code: str = "invalid_webhook") -> None:
        super().__init__(message)
        self.code = code


def verify_stripe_event(
    body: bytes, signature_header: str | None, secrets: Sequence[str], *, tolerance_seconds: int
) -> Mapping[str, Any]:
    """The event as a dict, once the signature verified against one of `secrets` and the
    timestamp is within `tolerance_seconds`; WebhookRejected otherwise."""
    if not signature_header:
        raise WebhookRejected("missing Stripe-Signature header")
    if not secrets:
        raise WebhookRejected("no webhook signing secret is configured")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WebhookRejected("body is not UTF-8") from exc
    last: stripe.SignatureVerificationError | None = None
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(
                text, signature_header, secret, tolerance=tolerance_seconds
            )
        except stripe.SignatureVerificationError as exc:
            last = exc
            continue
        break
    else:
        # The SDK's message says whether the timestamp or the signature failed.
        raise WebhookRejected(f"signature verification failed: {last}")
    # The SDK only refuses old timestamps; one far in the future is as suspect (a clock that
    # skews, or a signature minted to outlive the tolerance window).
    if _timestamp(signature_header) > time.time() + tolerance_seconds:
        raise WebhookRejected("signature timestamp is in the future")
    try:
        event = json.loads(text)
    except (ValueError, RecursionError) as exc:
        # ValueError: not JSON, or an integer past Python's digit limit; RecursionError: nested
        # deeper than the parser's stack.
        raise WebhookRejected("body is not valid JSON") from exc
    if "\\u" in text and not _storable(event):
        raise WebhookRejected(
            "body holds a NUL character or an unpaired surrogate, which cannot be stored",
            code="unstorable_payload",
        )
    if not isinstance(event, dict):
        raise WebhookRejected("body is not a JSON object")
    if not isinstance(event.get("id"), str) or not event["id"]:
        raise WebhookRejected("event has no id")
    if not isinstance(event.get("type"), str) or not event["type"]:
        raise WebhookRejected("event has no type")
    return event


def _storable(value: object) -> bool:
    """PostgreSQL's jsonb (and text) holds neither U+0000 nor an unpaired surrogate; both can
    only arrive as `\\u` escapes, so only bodies with an escape pay for this walk."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item or not item.isascii() and not _utf8(item):
                return False
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return True


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _timestamp(header: str) -> int:
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            return int(value)
    return 0
