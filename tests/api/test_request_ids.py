"""Every answer carries an `X-Request-Id` (the caller's when it is plain), every log line written
while the request runs names it, and the tenant once the API key said whose it is."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from typing import Any

import httpx

from adapters import logs
from api.auth import principal_for_key
from services.context import Services
from tests.factories.tenants import make_tenant
from tests.harness import Databases


async def test_the_answer_echoes_a_plain_request_id_and_makes_one_otherwise(
    api: httpx.AsyncClient,
) -> None:
    given = await api.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await api.get("/healthz", headers={"X-Request-Id": "not a plain id; " * 20})
    assert re.fullmatch(r"[0-9a-f]{32}", made.headers["x-request-id"])


async def test_log_lines_inside_a_request_name_it() -> None:
    lines: list[dict[str, Any]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(json.loads(logs.JsonFormatter().format(record)))

    async def app(scope: Any, receive: Any, send: Any) -> None:
        logging.getLogger("billing.test").warning("inside")
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    logger = logging.getLogger("billing.test")
    handler = Keep()
    logger.addHandler(handler)
    try:
        transport = httpx.ASGITransport(app=logs.RequestIds(app))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            answer = await client.get("/", headers={"X-Request-Id": "req-42"})
    finally:
        logger.removeHandler(handler)
    assert answer.headers["x-request-id"] == "req-42"
    assert len(lines) == 1
    assert lines[0]["request_id"] == "req-42"
    assert logs.REQUEST_ID.get() is None  # reset after the request


async def test_the_key_names_the_tenant_for_the_rest_of_the_request(
    services: Services, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)

    async def request() -> str | None:
        await principal_for_key(services, tenant.key)
        return logs.TENANT_ID.get()

    assert await asyncio.create_task(request()) == str(tenant.id)
    assert logs.TENANT_ID.get() is None
