"""One error schema, and authentication before the body: FastAPI's and Starlette's own errors
(malformed JSON, unknown path, wrong method) answer `{"error": {...}}`; a key without the scope
gets 403 whatever body it sends; every route of the app checks the key first."""

from __future__ import annotations

import importlib
import pkgutil

import httpx
from fastapi.routing import APIRoute

import api.routes
from adapters.api_keys import Scope
from api.app import create_app
from api.auth import AuthFirstRoute
from services.context import Services
from tests.factories.tenants import make_tenant
from tests.harness import Databases


def test_every_route_checks_the_key_before_the_body(services: Services) -> None:
    routes: list[APIRoute] = []
    for info in pkgutil.iter_modules(api.routes.__path__):
        module = importlib.import_module(f"api.routes.{info.name}")
        routes += [r for r in module.router.routes if isinstance(r, APIRoute)]
    assert [r.path for r in routes if not isinstance(r, AuthFirstRoute)] == []
    # ...and those are all the app serves.
    app = create_app(services.settings, services=services)
    served = {(path, m.upper()) for path, ops in app.openapi()["paths"].items() for m in ops}
    declared = {(r.path, m) for r in routes for m in r.methods}
    assert served <= declared, served - declared


async def test_a_read_key_with_a_malformed_body_is_403_not_a_body_error(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    reader = await make_tenant(dbs, scopes=[Scope.READ])
    for path in ("/api/billing/payment-methods", "/api/billing/usage", "/api/billing/subscription"):
        response = await api.post(
            path, content=b"{bad", headers={**reader.headers, "Content-Type": "application/json"}
        )
        assert response.status_code == 403, (path, response.text)
        assert response.json()["error"]["code"] == "forbidden"
    nobody = await api.post("/api/billing/usage", content=b"{bad")
    assert nobody.status_code == 401


async def test_frameworks_own_errors_use_the_error_schema(
    api: httpx.AsyncClient, dbs: Databases
) -> None:
    tenant = await make_tenant(dbs)
    malformed = await api.post(
        "/api/billing/payment-methods",
        content=b"{bad",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    unknown = await api.get("/api/billing/nope", headers=tenant.headers)
    wrong_method = await api.patch("/api/billing/account", headers=tenant.headers)
    assert [r.status_code for r in (malformed, unknown, wrong_method)] == [422, 404, 405]
    codes = [r.json()["error"]["code"] for r in (malformed, unknown, wrong_method)]
    assert codes == ["validation_error", "not_found", "method_not_allowed"]
    assert all("detail" not in r.json() for r in (malformed, unknown, wrong_method))
