"""The dunning policy the API snapshots into each subscription comes from settings, checked at
start-up."""

from __future__ import annotations

import pytest

from billing.dunning import DunningPolicy
from config import ConfigurationError, Settings


def test_default_settings_give_the_default_policy() -> None:
    assert Settings().dunning_policy() == DunningPolicy()


def test_configured_policy_is_what_subscriptions_snapshot() -> None:
    settings = Settings(
        dunning_retry_after_days=(2, 4), dunning_final_action="void", dunning_cancel_after_days=3
    )
    assert settings.dunning_policy().to_dict() == {
        "retry_after_days": [2, 4],
        "final_action": "void",
        "cancel_after_days": 3,
    }


def test_a_bad_policy_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="cancel_after_days"):
        Settings(dunning_cancel_after_days=-1)
