"""Subscription lifecycle: which command is allowed in which status, as data.

The workflow asks `check_command` in its Update validators, so a refused request never reaches
history; the reason in the `InvalidTransition` is what the API shows (HTTP 409).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from billing.errors import InvalidTransition

__all__ = [
    "ALLOWED",
    "Command",
    "LifecycleFacts",
    "Status",
    "check_cancel",
    "check_command",
]


class Status(StrEnum):
    INCOMPLETE = "incomplete"
    TRIALING = "trialing"
    ACTIVE = "active"
    PAST_DUE = "past_due"
    PAUSED = "paused"
    CANCELED = "canceled"


class Command(StrEnum):
    CHANGE_PLAN = "change_plan"
    CANCEL = "cancel"
    UNDO_CANCEL = "undo_cancel"
    PAUSE = "pause"
    RESUME = "resume"
    SET_PAYMENT_METHOD = "set_payment_method"


# The statuses each command is accepted in. Past-due subscriptions cannot change plan or pause:
# the open invoice must be settled (or the subscription canceled) first, so a plan change can
# never be used to dodge a debt. A trial can change plan (no proration: nothing was paid yet).
ALLOWED: dict[Command, frozenset[Status]] = {
    Command.CHANGE_PLAN: frozenset({Status.TRIALING, Status.ACTIVE}),
    Command.CANCEL: frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE, Status.PAUSED}),
    Command.UNDO_CANCEL: frozenset({Status.TRIALING, Status.ACTIVE, Status.PAST_DUE}),
    Command.PAUSE: frozenset({Status.ACTIVE}),
    Command.RESUME: frozenset({Status.PAUSED}),
    Command.SET_PAYMENT_METHOD: frozenset(
        {Status.INCOMPLETE, Status.TRIALING, Status.ACTIVE, Status.PAST_DUE, Status.PAUSED}
    ),
}


@dataclass(frozen=True, slots=True)
class LifecycleFacts:
    """What, besides the status, decides whether a command is allowed."""

    status: Status
    cancel_at_period_end: bool = False


def check_command(command: Command, facts: LifecycleFacts) -> None:
    """Raise `InvalidTransition` with a reason a person can act on, or return."""
    status = facts.status
    if status is Status.CANCELED:
        raise InvalidTransition(
            f"cannot {command.value.replace('_', ' ')}: the subscription is canceled "
            "(reactivate to start a new one)"
        )
    if status not in ALLOWED[command]:
        allowed = ", ".join(sorted(s.value for s in ALLOWED[command]))
        raise InvalidTransition(
            f"cannot {command.value.replace('_', ' ')} a {status.value} subscription "
            f"(allowed when: {allowed})"
        )
    if command is Command.UNDO_CANCEL and not facts.cancel_at_period_end:
        raise InvalidTransition("there is no pending cancellation to undo")
    if command is Command.CANCEL and facts.cancel_at_period_end:
        # Cancelling again "now" is allowed (see `check_cancel`); at period end is a repeat.
        return
    if command in (Command.CHANGE_PLAN, Command.PAUSE) and facts.cancel_at_period_end:
        raise InvalidTransition(
            f"cannot {command.value.replace('_', ' ')}: a cancellation is pending at period end "
            "(undo it first)"
        )


def check_cancel(facts: LifecycleFacts, *, at_period_end: bool) -> None:
    check_command(Command.CANCEL, facts)
    if at_period_end and facts.cancel_at_period_end:
        raise InvalidTransition("a cancellation at period end is already pending")
    if at_period_end and facts.status is Status.PAUSED:
        raise InvalidTransition(
            "a paused subscription has no running period to end: cancel it immediately"
        )
