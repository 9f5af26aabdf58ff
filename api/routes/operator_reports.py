"""Operator reports: `GET /api/billing/operator/reports/revenue?month=YYYY-MM`."""

from __future__ import annotations

from dataclasses import asdict

from fastapi import APIRouter, Query

from api.auth import AuthFirstRoute, OperatorPrincipal, ServicesDep
from api.errors import error_responses
from api.schemas import RevenueReportOut
from services import reports

router = APIRouter(
    route_class=AuthFirstRoute, prefix="/api/billing/operator/reports", tags=["operator"]
)


@router.get(
    "/revenue",
    response_model=RevenueReportOut,
    responses=error_responses(401, 403, 422, 503),
    summary="Revenue figures of one month, per currency, in minor units (docs/revenue.md)",
)
async def revenue_report(
    _: OperatorPrincipal,
    services: ServicesDep,
    month: str = Query(
        ..., pattern=r"^\d{4}-\d{2}$", description="calendar month in UTC", examples=["2026-03"]
    ),
) -> RevenueReportOut:
    report = await reports.revenue(services.system_db, month)
    return RevenueReportOut.model_validate(asdict(report))
