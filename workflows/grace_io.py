"""Temporal payloads of the generic grace window (`grace_window`) and its activities.

Stored in workflow histories: add fields only with defaults, never rename or remove one while a
running workflow may still replay it. Timestamps are ISO 8601 strings in UTC.
"""

from __future__ import annotations

from dataclasses import dataclass


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
