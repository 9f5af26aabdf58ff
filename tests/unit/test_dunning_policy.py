"""The dunning policy and the pure decisions of a dunning sequence."""

from __future__ import annotations

import pickle
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from billing.dunning import (
    DunningPolicy,
    InvalidDunningPolicy,
    attempt_outcome,
    decide_after_reread,
    final_action_key,
    next_attempt,
    parse_final_action,
    payment_key,
    retry_deadline,
    retry_delay,
)

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def test_default_policy_retries_after_1_3_5_7_days_then_marks_uncollectible() -> None:
    policy = DunningPolicy()
    assert policy.retry_after_days == (1, 3, 5, 7)
    assert policy.final_action == "mark_uncollectible"
    assert policy.cancel_after_days == 7
    assert policy.total_attempts(first_attempt=2) == 5


@pytest.mark.parametrize(
    "policy",
    [
        DunningPolicy(),
        DunningPolicy(retry_after_days=(2, 4), final_action="void", cancel_after_days=0),
        DunningPolicy(retry_after_days=()),
    ],
)
def test_snapshot_round_trips(policy: DunningPolicy) -> None:
    snapshot = policy.to_dict()
    assert DunningPolicy.from_dict(snapshot) == policy
    # The snapshot travels in workflow histories as JSON: plain lists, no tuples.
    assert isinstance(snapshot["retry_after_days"], list)


def test_missing_fields_take_the_defaults() -> None:
    assert DunningPolicy.from_dict({}) == DunningPolicy()
    assert DunningPolicy.from_dict({"final_action": "void"}).retry_after_days == (1, 3, 5, 7)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"retry_after_days": [1, 0]}, "retry_after_days[1]"),
        ({"retry_after_days": [-1]}, "retry_after_days[0]"),
        ({"retry_after_days": [1.5]}, "retry_after_days[0]"),
        ({"retry_after_days": [True]}, "retry_after_days[0]"),
        ({"retry_after_days": [91]}, "retry_after_days[0]"),
        ({"retry_after_days": "1,3"}, "retry_after_days"),
        ({"retry_after_days": 3}, "retry_after_days"),
        ({"retry_after_days": [1] * 13}, "retry_after_days"),
        ({"final_action": "refund"}, "final_action"),
        ({"final_action": None}, "final_action"),
        ({"cancel_after_days": -1}, "cancel_after_days"),
        ({"cancel_after_days": 7.0}, "cancel_after_days"),
        ({"cancel_after_days": 366}, "cancel_after_days"),
        ({"retry_days": [1]}, "retry_days"),
    ],
)
def test_invalid_policies_name_the_field(data: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidDunningPolicy) as raised:
        DunningPolicy.from_dict(data)
    assert raised.value.field == field
    assert field in str(raised.value)


def test_the_error_survives_pickling_with_its_field() -> None:
    error = pickle.loads(pickle.dumps(InvalidDunningPolicy("final_action", "nope")))
    assert (error.field, error.problem, error.code) == (
        "final_action",
        "nope",
        "invalid_dunning_policy",
    )


def test_constructing_directly_validates_too() -> None:
    with pytest.raises(InvalidDunningPolicy, match="retry_after_days"):
        DunningPolicy(retry_after_days=[1, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "decision"),
    [
        ("open", "attempt"),
        ("draft", "attempt"),
        ("paid", "stop_paid"),
        ("void", "stop_closed"),
        ("uncollectible", "stop_closed"),
    ],
)
def test_decision_after_reread(status: str, decision: str) -> None:
    assert decide_after_reread(status) == decision


def test_unknown_status_is_refused() -> None:
    with pytest.raises(ValueError, match="refunded"):
        decide_after_reread("refunded")


@pytest.mark.parametrize(
    ("retries", "done", "days"),
    [
        ((1, 3, 5, 7), 0, 1),
        ((1, 3, 5, 7), 1, 3),
        ((1, 3, 5, 7), 3, 7),
        ((1, 3, 5, 7), 4, None),
        ((2, 4), 1, 4),
        ((2, 4), 2, None),
        ((), 0, None),
    ],
)
def test_retry_delay_follows_the_schedule(
    retries: tuple[int, ...], done: int, days: int | None
) -> None:
    delay = retry_delay(DunningPolicy(retry_after_days=retries), done)
    assert delay == (None if days is None else timedelta(days=days))


@pytest.mark.parametrize(
    ("done", "time_scale", "expected"),
    [
        (0, 1.0, T0 + timedelta(days=1)),
        (2, 1.0, T0 + timedelta(days=5)),
        (2, 1440.0, T0 + timedelta(minutes=5)),  # a day lasts a minute in a demo
        (4, 1.0, None),
    ],
)
def test_retry_deadline_counts_from_the_previous_scheduled_attempt(
    done: int, time_scale: float, expected: datetime | None
) -> None:
    assert retry_deadline(DunningPolicy(), done, T0, time_scale) == expected


def test_retry_deadline_refuses_a_non_positive_time_scale() -> None:
    with pytest.raises(ValueError, match="time_scale"):
        retry_deadline(DunningPolicy(), 0, T0, 0.0)


@pytest.mark.parametrize(
    ("succeeded", "requires_action", "outcome"),
    [
        (True, False, "succeeded"),
        (False, False, "declined"),
        (False, True, "requires_action"),
    ],
)
def test_attempt_outcome(succeeded: bool, requires_action: bool, outcome: str) -> None:
    assert attempt_outcome(succeeded=succeeded, requires_action=requires_action) == outcome


def test_keys_are_derived_from_business_identity() -> None:
    assert payment_key("inv1", 3) == "pay:inv1:3"
    assert next_attempt(2) == 3
    assert final_action_key("inv1", "mark_uncollectible") == "uncollectible:inv1"
    assert final_action_key("inv1", "void") == "void:inv1"
    assert parse_final_action("void") == "void"
    with pytest.raises(InvalidDunningPolicy):
        parse_final_action("delete")
