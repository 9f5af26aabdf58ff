"""Outbound notification HTTP: one signed POST per attempt (Standard Webhooks headers)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from billing.standard_webhooks import signed_headers


@dataclass(frozen=True)
class SendOutcome:
    delivered: bool
    status_code: int | None
    error: str | None


class NotificationSender(Protocol):
    async def send(
        self, *, url: str, secret: str, message_id: str, timestamp: int, body: bytes
    ) -> SendOutcome: ...


def notification_body(event_type: str, timestamp: str, data: Mapping[str, Any]) -> bytes:
    """The Standard Webhooks payload shape: `type`, `timestamp`, `data`."""
    return json.dumps(
        {"type": event_type, "timestamp": timestamp, "data": dict(data)},
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


class HttpxNotificationSender:
    """Any 2xx is a delivery; anything else (status, timeout, refused connection) is a failed
    attempt the delivery workflow retries. Redirects are not followed: a receiver must answer."""

    def __init__(self, *, timeout_seconds: float) -> None:
        self._client = httpx.AsyncClient(
            timeout=timeout_seconds,
            follow_redirects=False,
            headers={"user-agent": "billing-engine-notifications/1"},
        )

    async def send(
        self, *, url: str, secret: str, message_id: str, timestamp: int, body: bytes
    ) -> SendOutcome:
        headers = {
            **signed_headers(secret, message_id, timestamp, body).as_dict(),
            "content-type": "application/json",
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return SendOutcome(False, None, f"{type(exc).__name__}: {exc}")
        if 200 <= response.status_code < 300:
            return SendOutcome(True, response.status_code, None)
        return SendOutcome(False, response.status_code, f"HTTP {response.status_code}")

    async def aclose(self) -> None:
        await self._client.aclose()
