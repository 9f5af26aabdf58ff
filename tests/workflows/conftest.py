"""Fixtures of the grace-window tests (soft cap and payment)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from adapters.stripe_fake import FakeStripeGateway
from api.app import create_app
from config import Settings
from services.context import Services
from tests.harness import Databases, venv_executable
from worker import build_workers


# A time-skipping server of each test's own (it starts in about 0.1 s): workflows left running
# by other tests (a subscription waiting for its period end, a window whose timer fires during
# another test's skip and schedules an activity on a queue no worker polls any more) can hold
# time skipping back, and a week's skip then times out.
@pytest.fixture
async def grace_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=venv_executable("temporal-test-server")
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def grace_workers(
    grace_env: WorkflowEnvironment, dbs: Databases, settings: Settings
) -> AsyncIterator[list[Worker]]:
    built = build_workers(
        grace_env.client,
        db=dbs.worker,
        gateway=FakeStripeGateway(),
        task_queue=settings.task_queue,
        stripe_task_queue=settings.stripe_task_queue,
        stripe_activities_per_second=settings.stripe_activities_per_second,
    )
    tasks = [asyncio.create_task(w.run()) for w in built]
    yield built
    await asyncio.gather(*(w.shutdown() for w in built), return_exceptions=True)
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def grace_api(
    grace_env: WorkflowEnvironment, services: Services
) -> AsyncIterator[httpx.AsyncClient]:
    own = dataclasses.replace(services, temporal=grace_env.client, extras={})
    transport = httpx.ASGITransport(app=create_app(own.settings, services=own))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client
