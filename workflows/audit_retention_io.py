"""Payload types of the retention jobs: the audit log's (`audit_retention`, ADR 0017) and an
erased tenant's books (`erased_books_purge`, ADR 0018)."""

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


@dataclass(frozen=True)
class BooksRetentionInput:
    # An erased tenant's books leave this many months after its erasure (from settings).
    months: int


@dataclass(frozen=True)
class BooksPurgeResult:
    before: str
    tenants: int
    rows: int
