"""Temporal payloads of the usage reconciliation workflow (`reconcile_usage`).

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from workflows.grace_io import GraceInput


@dataclass(frozen=True)
class ReconcileInput:
    """Recompute aggregates for UTC days [first, last]; or the `days` days up to the run's date
    when `first` is empty (the scheduled form)."""

    days: int = 3
    first: str = ""
    last: str = ""
    repair: bool = True
    # Snapshotted from settings when the schedule is created: the length of a grace window the
    # run opens for a soft-cap crossing whose window was never started (Temporal was down).
    soft_cap_grace_seconds: float = 24 * 3600
    time_scale: float = 1.0
    # Task queue for those grace windows (the worker's main queue).
    task_queue: str = ""


@dataclass(frozen=True)
class ReconcileResult:
    first: str
    last: str
    drift_found: int
    repaired: int
    grace_windows_opened: int = 0


@dataclass(frozen=True)
class MissingGraceWindows:
    """Soft caps crossed in an open period with no grace window recorded."""

    windows: list[GraceInput] = field(default_factory=list)
