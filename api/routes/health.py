"""Liveness and readiness."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.auth import AuthFirstRoute, ServicesDep
from api.schemas import ComponentHealth, Readiness

router = APIRouter(route_class=AuthFirstRoute, tags=["health"])

READINESS_TIMEOUT_SECONDS = 3.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up. Says nothing about its dependencies (see /readyz)."""
    return {"status": "ok"}


async def _check(probe: Awaitable[object]) -> ComponentHealth:
    try:
        await asyncio.wait_for(probe, READINESS_TIMEOUT_SECONDS)
    except Exception as error:  # noqa: BLE001 - any failure means "down", reported by name
        return ComponentHealth(status="down", detail=f"{type(error).__name__}: {error}"[:300])
    return ComponentHealth(status="ok")


@router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
async def readyz(services: ServicesDep) -> JSONResponse:
    """Postgres, Temporal and Stripe each checked; 503 names the one that is down."""
    postgres, temporal, stripe = await asyncio.gather(
        _check(services.system_db.ping()),
        _check(services.temporal.service_client.check_health()),
        _check(services.stripe.health_check()),
    )
    components = {"postgres": postgres, "temporal": temporal, "stripe": stripe}
    ok = all(c.status == "ok" for c in components.values())
    body = Readiness(status="ok" if ok else "down", components=components)
    return JSONResponse(body.model_dump(), status_code=200 if ok else 503)
