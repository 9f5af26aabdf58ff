"""Schemathesis against the real app, served by uvicorn on 127.0.0.1 with the real worker: every
operation of the OpenAPI document, with a tenant key (tenant routes) and an operator key
(operator routes). Fails on any 5xx and on any response that breaks the document (status not
documented, body or content type not as documented). Bounded: a few dozen examples per
operation, well under two minutes on two cores."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, Phase
from pydantic import SecretStr
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from services.context import Services
from tests.api.test_billing_api import subscribe_with_card
from tests.factories.stripe_events import TEST_WEBHOOK_SECRET
from tests.factories.tenants import operator_headers
from tests.harness import Databases, free_port

EXAMPLES_PER_OPERATION = 60
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(
    spec: dict[str, Any], base_url: str, headers_for: Callable[[str], dict[str, str]]
) -> list[str]:
    """Runs in a thread (schemathesis calls are synchronous); returns one line per failure."""
    schema = schemathesis.openapi.from_dict(spec)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        failure = _fuzz_operation(operation, base_url, headers_for(operation.path))
        if failure is not None:
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    return failures


def _fuzz_operation(operation: Any, base_url: str, headers: dict[str, str]) -> str | None:
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=operation.as_strategy())
    def run(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=30)
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        run()
    except (Exception, BaseExceptionGroup) as error:  # the whole report is in the message
        return str(error)
    return None


@pytest.mark.usefixtures("workers")
async def test_every_operation_keeps_the_openapi_contract(
    services: Services, dbs: Databases
) -> None:
    operator = await operator_headers(dbs)
    settings = services.settings.model_copy(
        update={"stripe_webhook_secrets": [SecretStr(TEST_WEBHOOK_SECRET)]}
    )
    app = create_app(settings, services=replace(services, settings=settings))
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver"
    ) as api:
        tenant = await subscribe_with_card(api, dbs)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    )
    serving = asyncio.create_task(server.serve())
    try:
        for _ in range(200):
            if server.started:
                break
            await asyncio.sleep(0.02)
        assert server.started

        def headers_for(path: str) -> dict[str, str]:
            return operator if "/operator/" in path else tenant.headers

        failures = await asyncio.to_thread(
            _fuzz, app.openapi(), f"http://127.0.0.1:{port}", headers_for
        )
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    assert not failures, "\n\n".join(failures)
