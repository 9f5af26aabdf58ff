"""Current Stripe object shapes (tests/fixtures/stripe/resources.json, a copy of Stripe's own
API fixtures from shared/stripe-fixtures) wrapped as signed events of every type the engine
handles: accepted, never a 500, and processed to a final inbox status (these objects concern no
engine tenant: `ignored`)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from billing.stripe_events import HANDLED_EVENT_TYPES, event_refs
from config import ROOT
from tests.factories.stripe_events import signed_request, stripe_event
from tests.harness import Databases
from tests.webhooks.conftest import settle_api
from tests.webhooks.test_stripe_webhooks import URL, inbox_row
from workflows.stripe_event_io import StripeEventResult

FIXTURES = ROOT / "tests" / "fixtures" / "stripe" / "resources.json"
EVENT_TYPES = sorted(HANDLED_EVENT_TYPES | {"customer.subscription.updated"})


def _resources() -> dict[str, dict[str, Any]]:
    data: dict[str, dict[str, Any]] = json.loads(Path(FIXTURES).read_text())
    return data


def test_reference_extraction_accepts_every_shape() -> None:
    for obj in _resources().values():
        for event_type in EVENT_TYPES:
            refs = event_refs(event_type, obj)
            assert refs.object_id == obj.get("id")


async def test_every_fixture_as_every_handled_event_is_accepted_and_processed(
    api: httpx.AsyncClient,
    dbs: Databases,
    workflow_env: WorkflowEnvironment,
    event_workers: list[Worker],
) -> None:
    started: list[str] = []
    for name, obj in _resources().items():
        for event_type in EVENT_TYPES:
            event = stripe_event(event_type, obj)
            body, headers = signed_request(event)
            response = await api.post(URL, content=body, headers=headers)
            assert response.status_code == 200, (name, event_type, response.text)
            if response.json()["status"] == "received":  # handled: a workflow was started
                started.append(event["id"])
    assert started
    await settle_api(api)  # the answers do not wait for the workflows' starts
    results = await asyncio.gather(
        *(
            workflow_env.client.get_workflow_handle(
                f"stripe-event:{event_id}", result_type=StripeEventResult
            ).result()
            for event_id in started
        )
    )
    assert {r.status for r in results} == {"ignored"}
    assert (await inbox_row(dbs, started[0])).status == "ignored"
