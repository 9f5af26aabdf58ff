"""Bearer API keys: who is calling, for which tenant, with which scopes.

Unknown, revoked or malformed key -> 401; a key without the scope -> 403. Tenant keys only ever
reach their own tenant's rows (RLS does the filtering; a foreign id simply is not found -> 404).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters.api_keys import Scope, hash_key, implied_scopes, is_well_formed
from adapters.db import tenants as tenant_repo
from api.errors import Forbidden, Unauthorized
from api.services import Services

_bearer = HTTPBearer(auto_error=False, description="API key: `Authorization: Bearer bk_...`")


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: UUID
    tenant_id: UUID | None
    scopes: frozenset[str]

    @property
    def actor(self) -> str:
        return f"api_key:{self.key_id}"

    def require_tenant(self) -> UUID:
        if self.tenant_id is None:
            raise Forbidden("this endpoint needs a tenant API key, not an operator key")
        return self.tenant_id


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    key = credentials.credentials
    if not is_well_formed(key):
        raise Unauthorized("malformed API key")
    key_hash = hash_key(key, services.settings.api_key_pepper.get_secret_value())
    async with services.system_db.transaction() as conn:
        row = await tenant_repo.find_api_key(conn, key_hash)
    if row is None:
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    return Principal(row.id, row.tenant_id, implied_scopes(frozenset(row.scopes)))


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"this API key lacks the `{scope}` scope")
        if scope is not Scope.OPERATOR:
            principal.require_tenant()
        return principal

    return dependency


ReadPrincipal = Annotated[Principal, Depends(require(Scope.READ))]
ManagePrincipal = Annotated[Principal, Depends(require(Scope.MANAGE))]
OperatorPrincipal = Annotated[Principal, Depends(require(Scope.OPERATOR))]
