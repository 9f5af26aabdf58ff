"""Bearer API keys: who is calling, for which tenant, with which scopes.

Unknown, revoked or malformed key -> 401; a key without the scope -> 403. Tenant keys only ever
reach their own tenant's rows (RLS does the filtering; a foreign id simply is not found -> 404).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Annotated, Any
from uuid import UUID

from fastapi import Depends, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from adapters import logs
from adapters.api_keys import Scope, hash_key, implied_scopes, is_well_formed
from adapters.db import tenants as tenant_repo
from api.errors import Forbidden, Unauthorized
from services import rate_limits
from services.context import Services

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


@dataclass
class ApiKeyCache:
    """Recently verified keys by hash, for `ttl_seconds`, so hot endpoints (the quota check) do
    not pay a database round trip per request for authentication.

    Revocation: the process that revokes a key forgets it at once (`forget`); other API
    processes keep accepting it for at most `ttl_seconds` (5 s by default; ADR 0003). Unknown
    and revoked keys are never cached, so a key issued a moment ago works immediately.
    """

    ttl_seconds: float
    _entries: dict[bytes, tuple[float, Principal]] = field(default_factory=dict)
    max_entries: int = 10_000

    def get(self, key_hash: bytes) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key_hash, None)
            return None
        return entry[1]

    def put(self, key_hash: bytes, principal: Principal) -> None:
        if self.ttl_seconds <= 0:
            return
        if len(self._entries) >= self.max_entries:
            self._entries.clear()  # crude but bounded; refilling costs one lookup per key
        self._entries[key_hash] = (time.monotonic() + self.ttl_seconds, principal)

    def forget(self, key_id: UUID) -> None:
        for key_hash, (_, principal) in list(self._entries.items()):
            if principal.key_id == key_id:
                self._entries.pop(key_hash, None)


async def get_services(request: Request) -> Services:
    # async on purpose: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
    # per request that cost more than the whole quota read (ADR 0003).
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


async def authenticate(
    request: Request,
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    known = getattr(request.state, "principal", None)
    if isinstance(known, Principal):  # AuthFirstRoute checked the key before the body
        return known
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    principal = await principal_for_key(services, credentials.credentials)
    await _limit(services, request, principal)
    request.state.principal = principal
    return principal


async def authorize_request(request: Request, scope: Scope) -> tuple[Services, Principal]:
    """`require(scope)` without dependency injection, for the quota check: solving the
    dependency chain cost as much as the database read (ADR 0003). Same rules, same errors."""
    services: Services = request.app.state.services
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        raise Unauthorized("missing API key: send `Authorization: Bearer <key>`")
    principal = await principal_for_key(services, key.strip())
    if scope not in principal.scopes:
        raise Forbidden(f"this API key lacks the `{scope}` scope")
    if scope is not Scope.OPERATOR:
        principal.require_tenant()
    await _limit(services, request, principal)
    request.state.principal = principal
    return services, principal


async def _limit(services: Services, request: Request, principal: Principal) -> None:
    """A tenant key's request counts against its tenant's limit for the route's class (ADR
    0012); operator keys are not limited."""
    if principal.tenant_id is not None:
        await rate_limits.limit_tenant(
            services, principal.tenant_id, request.method, request.url.path
        )


async def principal_for_key(services: Services, key: str) -> Principal:
    if not is_well_formed(key):
        raise Unauthorized("malformed API key")
    key_hash = hash_key(key, services.settings.api_key_pepper.get_secret_value())
    cache = key_cache(services)
    cached = cache.get(key_hash)
    if cached is not None:
        _log_tenant(cached)
        return cached
    async with services.system_db.transaction() as conn:
        row = await tenant_repo.find_api_key(conn, key_hash)
    if row is None:
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key has been revoked")
    principal = Principal(row.id, row.tenant_id, implied_scopes(frozenset(row.scopes)))
    cache.put(key_hash, principal)
    _log_tenant(principal)
    return principal


def _log_tenant(principal: Principal) -> None:
    """Every log line written for the rest of this request names the tenant."""
    if principal.tenant_id is not None:
        logs.TENANT_ID.set(str(principal.tenant_id))


def key_cache(services: Services) -> ApiKeyCache:
    """The API process's key cache, created on first use (kept on the Services object, which
    lives as long as the app)."""
    cache = services.extras.get("api_key_cache")
    if not isinstance(cache, ApiKeyCache):
        cache = services.extras["api_key_cache"] = ApiKeyCache(
            services.settings.api_key_cache_seconds
        )
    return cache


def require(scope: Scope) -> Callable[..., Coroutine[Any, Any, Principal]]:
    async def dependency(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if scope not in principal.scopes:
            raise Forbidden(f"this API key lacks the `{scope}` scope")
        if scope is not Scope.OPERATOR:
            principal.require_tenant()
        return principal

    dependency.required_scope = scope  # type: ignore[attr-defined]
    return dependency


def required_scope(dependant: Dependant) -> Scope | None:
    """The scope a route's dependencies demand (`require(scope)` anywhere in the tree)."""
    for dep in dependant.dependencies:
        scope = getattr(dep.call, "required_scope", None)
        if isinstance(scope, Scope):
            return scope
        nested = required_scope(dep)
        if nested is not None:
            return nested
    return None


class AuthFirstRoute(APIRoute):
    """Checks the API key and its scope before FastAPI reads and parses the body, so a caller
    without the right key learns nothing from body validation (401/403 come first, then 4xx for
    the body). Every router of the app uses it; a test checks that."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        scope = required_scope(self.dependant)
        if scope is None or self.body_field is None:
            return handler

        async def auth_first(request: Request) -> Response:
            await authorize_request(request, scope)
            return await handler(request)

        return auth_first


ReadPrincipal = Annotated[Principal, Depends(require(Scope.READ))]
ManagePrincipal = Annotated[Principal, Depends(require(Scope.MANAGE))]
OperatorPrincipal = Annotated[Principal, Depends(require(Scope.OPERATOR))]
