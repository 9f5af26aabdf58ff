"""Payload types of the tenant data export (`tenant_export`, ADR 0016)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExportInput:
    tenant_id: str
    export_id: str
    requested_by: str
    tables: list[str]
    # How long the finished file stays downloadable (snapshotted from settings).
    keep_seconds: float
    reason: str | None = None


@dataclass(frozen=True)
class ExportTableInput:
    tenant_id: str
    export_id: str
    table: str


@dataclass(frozen=True)
class ExportedTable:
    table: str
    rows: int
    sha256: str


@dataclass(frozen=True)
class FinishExportInput:
    tenant_id: str
    export_id: str
    requested_by: str
    tables: list[ExportedTable]
    expires_at: str
    reason: str | None = None


@dataclass(frozen=True)
class ExportFile:
    path: str
    bytes: int
    sha256: str


@dataclass(frozen=True)
class ExpireExportInput:
    tenant_id: str
    export_id: str


@dataclass(frozen=True)
class ExportProgress:
    export_id: str
    # running | ready | expired
    status: str
    tables_total: int
    tables_done: int
    rows: int
    current_table: str | None = None
    expires_at: str | None = None
    sha256: str | None = None
    tables: list[ExportedTable] = field(default_factory=list)
