"""Payloads of the generic grace window (`grace_window`) and the usage reconciliation workflow.

Stored in workflow histories: add fields only with defaults; never rename or remove one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GraceInput:
    """Everything the window needs, snapshotted at start: a settings change never moves it."""

    tenant_id: str
    # soft_cap (subject: a metric) | payment (subject: an invoice id)
    kind: str
    subject: str
    # The period the grace belongs to, as billing.usage.period_key() (also in the workflow id).
    period_key: str
    # The period start as ISO 8601: the soft-cap effect blocks that period's counter.
    period_start: str
    duration_seconds: float
    actor: str
    # Demo clock: the duration is divided by this factor (1.0 = real time).
    time_scale: float = 1.0


@dataclass(frozen=True)
class GraceResult:
    # expired | ended (by an operator, effect applied) | a resolution given by `resolve`
    # (for a payment window that expired: the resolution that settled it afterwards, e.g. "paid")
    resolution: str
    effect_applied: bool
    # Payment windows: the suspension this window caused was lifted when it was settled.
    effect_lifted: bool = False


@dataclass(frozen=True)
class GraceResolve:
    """Close the window without its effect, e.g. resolution "upgraded" or "paid"."""

    resolution: str
    actor: str


@dataclass(frozen=True)
class GraceExtend:
    seconds: float
    actor: str


@dataclass(frozen=True)
class GraceEndEarly:
    """Expire the window now: the effect runs as if the timer had fired."""

    actor: str


@dataclass(frozen=True)
class GraceStatus:
    started_at: str
    expires_at: str
    resolution: str | None
    # Payment windows: expired (or ended) and not settled yet, so the suspension is in force.
    effect_in_force: bool = False


@dataclass(frozen=True)
class GraceProjection:
    """The `grace_periods` row as the workflow sees it (upserted by workflow id)."""

    workflow_id: str
    tenant_id: str
    kind: str
    subject: str
    started_at: str
    expires_at: str
    resolved_at: str | None = None
    resolution: str | None = None
    actor: str | None = None


@dataclass(frozen=True)
class GraceProjected:
    written: bool


@dataclass(frozen=True)
class GraceEffectInput:
    tenant_id: str
    kind: str
    subject: str
    period_start: str
    actor: str
    # Payment: the window's row is marked in force (`expired`/`ended`) in the suspension's own
    # transaction, so a settlement of another window running at the same moment sees it.
    workflow_id: str = ""
    resolution: str = ""


@dataclass(frozen=True)
class GraceEffectResult:
    applied: bool


@dataclass(frozen=True)
class PaymentSettlement:
    """Settle a payment window that already expired: record `resolution` on its row and, when the
    resolution lifts the suspension ("paid", "waived"), reactivate the tenant unless another
    payment window of the tenant still holds it suspended."""

    workflow_id: str
    tenant_id: str
    invoice_id: str
    resolution: str
    actor: str
    lift: bool


@dataclass(frozen=True)
class PaymentSettled:
    # The tenant went from suspended back to active in this call.
    reactivated: bool


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


@dataclass(frozen=True)
class PeriodOverageInput:
    """Read a closed period's aggregates and price its overage with the plan snapshot the
    subscription workflow holds (billing.catalog.Plan.to_dict())."""

    tenant_id: str
    period_start: str
    plan_definition: dict[str, Any]


@dataclass(frozen=True)
class OverageLineOut:
    metric: str
    used: int
    included: int
    units: int
    unit_size: int
    unit_price: int
    amount: int
    description: str


@dataclass(frozen=True)
class PeriodOverageResult:
    lines: list[OverageLineOut] = field(default_factory=list)
    total: int = 0
