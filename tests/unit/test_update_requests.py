"""Every command sent to the subscription workflow carries the API request that sent it: the
workflow writes the change's audit row in the worker, outside the request, and names the
request there only if the command brought its id (ADR 0019). A new update whose request type
has no `request_id` would write audit rows no request can be traced to."""

from __future__ import annotations

import dataclasses

from temporalio import workflow

from workflows.subscription import SubscriptionWorkflow


def test_every_subscription_update_request_carries_a_request_id() -> None:
    updates = workflow._Definition.must_from_class(SubscriptionWorkflow).updates
    assert updates, "the subscription workflow has no updates: the test reads the wrong class"
    missing = {
        name: arg.__name__
        for name, update in updates.items()
        for arg in update.arg_types
        if "request_id" not in {f.name for f in dataclasses.fields(arg)}
    }
    assert missing == {}
