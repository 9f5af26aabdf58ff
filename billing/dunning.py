"""Dunning policy and the pure decisions of a dunning sequence.

A dunning sequence chases one unpaid invoice: it retries the payment on a schedule, stops as soon
as the invoice is paid (by a retry, or out of band on the hosted page) or closed elsewhere, and
applies the policy's final action when the schedule is exhausted.

Schedule semantics (ADR 0005): `retry_after_days[k]` is the delay between scheduled attempt k
and the previous *scheduled* attempt (the first one counts from the start of dunning, i.e. from
the renewal's own failed collection). An immediate retry requested by a card update is an extra
attempt: it gets the next attempt number but neither consumes nor moves a scheduled step, so a
deadline once computed never moves.

The policy is snapshotted into the workflow input (`to_dict`) when dunning starts, so changing
configuration later never moves a deadline already in flight. This module is pure.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Final, Literal, get_args

from billing.errors import BillingError

FinalAction = Literal["mark_uncollectible", "void"]
FINAL_ACTIONS: Final[frozenset[str]] = frozenset(get_args(FinalAction))

# Bounds that catch configuration mistakes (a delay in hours typed as days, a runaway schedule)
# without constraining any sensible policy.
MAX_RETRIES: Final = 12
MAX_RETRY_DELAY_DAYS: Final = 90
MAX_CANCEL_AFTER_DAYS: Final = 365


class InvalidDunningPolicy(BillingError):
    """A dunning policy (from settings or a workflow snapshot) is malformed; `field` names it."""

    code: ClassVar[str] = "invalid_dunning_policy"

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"dunning policy {field}: {problem}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.field, self.problem))


def _is_int(value: object) -> bool:
    # bool is an int subclass; `True` days is a configuration bug, not one day.
    return type(value) is int


@dataclass(frozen=True)
class DunningPolicy:
    retry_after_days: tuple[int, ...] = (1, 3, 5, 7)
    final_action: FinalAction = "mark_uncollectible"
    # Delay between exhaustion and the subscription's cancellation (applied by the parent).
    cancel_after_days: int = 7

    def __post_init__(self) -> None:
        if not isinstance(self.retry_after_days, tuple):
            raise InvalidDunningPolicy("retry_after_days", "must be a tuple of whole days")
        if len(self.retry_after_days) > MAX_RETRIES:
            raise InvalidDunningPolicy(
                "retry_after_days",
                f"at most {MAX_RETRIES} retries, got {len(self.retry_after_days)}",
            )
        for n, days in enumerate(self.retry_after_days):
            if not _is_int(days) or not 1 <= days <= MAX_RETRY_DELAY_DAYS:
                raise InvalidDunningPolicy(
                    f"retry_after_days[{n}]",
                    f"must be a whole number of days in 1..{MAX_RETRY_DELAY_DAYS}, got {days!r}",
                )
        if self.final_action not in FINAL_ACTIONS:
            raise InvalidDunningPolicy(
                "final_action",
                f"must be one of {sorted(FINAL_ACTIONS)}, got {self.final_action!r}",
            )
        if not _is_int(self.cancel_after_days) or not (
            0 <= self.cancel_after_days <= MAX_CANCEL_AFTER_DAYS
        ):
            raise InvalidDunningPolicy(
                "cancel_after_days",
                f"must be a whole number of days in 0..{MAX_CANCEL_AFTER_DAYS}, "
                f"got {self.cancel_after_days!r}",
            )

    @property
    def scheduled_retries(self) -> int:
        return len(self.retry_after_days)

    def total_attempts(self, first_attempt: int) -> int:
        """Attempts in the whole collection, counting those made before dunning started."""
        return first_attempt - 1 + self.scheduled_retries

    def to_dict(self) -> dict[str, Any]:
        """The JSON-safe snapshot stored in the workflow input."""
        return {
            "retry_after_days": list(self.retry_after_days),
            "final_action": self.final_action,
            "cancel_after_days": self.cancel_after_days,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DunningPolicy:
        unknown = sorted(set(data) - {"retry_after_days", "final_action", "cancel_after_days"})
        if unknown:
            raise InvalidDunningPolicy(unknown[0], "unknown field")
        defaults = cls()
        retries = data.get("retry_after_days", defaults.retry_after_days)
        if isinstance(retries, str) or not isinstance(retries, list | tuple):
            raise InvalidDunningPolicy("retry_after_days", f"must be a list, got {retries!r}")
        return cls(
            retry_after_days=tuple(retries),
            final_action=data.get("final_action", defaults.final_action),
            cancel_after_days=data.get("cancel_after_days", defaults.cancel_after_days),
        )


# --------------------------------------------------------------------------------------------
# Decisions.
# --------------------------------------------------------------------------------------------

# What to do once the invoice has been re-read from Stripe before an attempt.
RereadDecision = Literal["attempt", "stop_paid", "stop_closed"]


def decide_after_reread(status: str) -> RereadDecision:
    """Stripe keeps idempotency keys for about 24 hours only, and dunning spans days: the
    invoice's current status, not a key, is what prevents charging an invoice paid meanwhile."""
    if status == "paid":
        return "stop_paid"
    if status in ("void", "uncollectible"):
        # Closed by someone else (operator, parent, Stripe dashboard): not ours to chase.
        return "stop_closed"
    if status in ("open", "draft"):
        return "attempt"
    raise ValueError(f"unknown invoice status {status!r}")


def retry_delay(policy: DunningPolicy, scheduled_done: int) -> timedelta | None:
    """Delay before the next scheduled attempt, after `scheduled_done` scheduled retries;
    None when the schedule is exhausted."""
    if scheduled_done < 0:
        raise ValueError(f"scheduled_done must be >= 0, got {scheduled_done}")
    if scheduled_done >= policy.scheduled_retries:
        return None
    return timedelta(days=policy.retry_after_days[scheduled_done])


def retry_deadline(
    policy: DunningPolicy, scheduled_done: int, previous_scheduled_at: datetime, time_scale: float
) -> datetime | None:
    """When the next scheduled attempt is due. `time_scale` > 1 compresses the billing calendar
    for demos (a day lasts 1/time_scale days); it is never applied to amounts."""
    if time_scale <= 0:
        raise ValueError(f"time_scale must be positive, got {time_scale}")
    delay = retry_delay(policy, scheduled_done)
    if delay is None:
        return None
    return previous_scheduled_at + delay / time_scale


AttemptOutcome = Literal["succeeded", "declined", "requires_action", "already_paid", "error"]


def attempt_outcome(*, succeeded: bool, requires_action: bool) -> AttemptOutcome:
    """The `dunning_attempts.outcome` of one answered payment attempt ("error" is recorded when
    Stripe never answered; "already_paid" belongs to the pre-attempt re-read)."""
    if succeeded:
        return "succeeded"
    return "requires_action" if requires_action else "declined"


def next_attempt(last_attempt: int) -> int:
    """Attempt numbers only grow: each one is part of the idempotency key `pay:{invoice}:{n}`,
    so reusing a number would replay the old (declined) result instead of charging again."""
    if last_attempt < 0:
        raise ValueError(f"attempt numbers are positive, got {last_attempt}")
    return last_attempt + 1


def payment_key(invoice_id: str, attempt: int) -> str:
    return f"pay:{invoice_id}:{attempt}"


def parse_final_action(raw: str) -> FinalAction:
    if raw == "mark_uncollectible":
        return "mark_uncollectible"
    if raw == "void":
        return "void"
    raise InvalidDunningPolicy(
        "final_action", f"must be one of {sorted(FINAL_ACTIONS)}, got {raw!r}"
    )


def final_action_key(invoice_id: str, action: FinalAction) -> str:
    return f"uncollectible:{invoice_id}" if action == "mark_uncollectible" else f"void:{invoice_id}"
