"""Every state-changing operator route takes an optional `reason` (as Kill Bill records one),
read from the OpenAPI document so a new route without one fails; and the reason lands in the
audit row, with the operator's key as the actor."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from adapters.db.tables import audit_log
from api.app import create_app
from config import Settings
from tests.factories.tenants import operator_headers
from tests.harness import Databases


def _operator_commands() -> list[tuple[str, str, dict[str, Any]]]:
    spec = create_app(Settings.model_construct()).openapi()
    found = []
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/billing/operator/"):
            continue
        for method, operation in operations.items():
            if method in ("post", "put", "delete", "patch"):
                found.append((method.upper(), path, operation))
    return found


def _accepts_reason(spec: dict[str, Any], operation: dict[str, Any]) -> bool:
    if any(p["name"] == "reason" for p in operation.get("parameters", [])):
        return True
    schema = (operation.get("requestBody", {}).get("content", {}).get("application/json", {})).get(
        "schema", {}
    )
    refs = [schema] + schema.get("anyOf", [])
    for ref in refs:
        name = ref.get("$ref", "").rsplit("/", 1)[-1]
        if "reason" in spec["components"]["schemas"].get(name, {}).get("properties", {}):
            return True
    return False


def test_every_operator_command_takes_a_reason() -> None:
    spec = create_app(Settings.model_construct()).openapi()
    commands = _operator_commands()
    assert len(commands) >= 12
    without = [f"{m} {p}" for m, p, op in commands if not _accepts_reason(spec, op)]
    assert without == []


async def test_the_reason_is_in_the_audit_row(api: httpx.AsyncClient, dbs: Databases) -> None:
    op = await operator_headers(dbs)
    made = await api.post(
        "/api/billing/operator/tenants", json={"name": "Reasoned", "reason": "onboarding #12"},
        headers=op,
    )  # fmt: skip
    tenant_id = made.json()["id"]
    key = await api.post(
        f"/api/billing/operator/tenants/{tenant_id}/api-keys",
        json={"name": "k", "scopes": ["billing.read"], "reason": "backend key"},
        headers=op,
    )
    revoked = await api.delete(
        f"/api/billing/operator/api-keys/{key.json()['id']}",
        params={"reason": "leaked in a log"},
        headers=op,
    )
    assert revoked.status_code == 200, revoked.text
    async with dbs.admin.transaction() as conn:
        rows = (
            await conn.execute(
                select(audit_log.c.action, audit_log.c.actor, audit_log.c.details)
                .where(
                    audit_log.c.action.in_(["tenant.created", "api_key.created", "api_key.revoked"])
                )
                .order_by(audit_log.c.id)
            )
        ).all()
    assert [(r.action, r.details["reason"]) for r in rows] == [
        ("tenant.created", "onboarding #12"),
        ("api_key.created", "backend key"),
        ("api_key.revoked", "leaked in a log"),
    ]
    assert all(r.actor.startswith("api_key:") for r in rows)
    assert (rows[-1].details["before"], rows[-1].details["after"]) == (
        {"revoked": False},
        {"revoked": True},
    )
