"""The subscription workflow: `workflow.py` (the loop and the handlers), `effects.py` (the
interpreter of `billing.subscription`'s effects) and `carry.py` (the state across Temporal's
boundary)."""

from workflows.subscription.workflow import (
    DUNNING_WIRING,
    PAYMENT_GRACE_WIRING,
    TRIAL_CANCEL_AT_END,
    SubscriptionWorkflow,
    workflow_id,
)

__all__ = [
    "DUNNING_WIRING",
    "PAYMENT_GRACE_WIRING",
    "TRIAL_CANCEL_AT_END",
    "SubscriptionWorkflow",
    "workflow_id",
]
