"""Payload types of the audit log's retention job (`audit_retention`, ADR 0017)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetentionInput:
    # Rows older than this many months are purged (snapshotted from settings).
    months: int


@dataclass(frozen=True)
class PurgeInput:
    before: str
    actor: str


@dataclass(frozen=True)
class PurgeResult:
    before: str
    purged: int
