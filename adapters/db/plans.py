"""Plan versions: the catalog file synced into immutable rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from adapters.db.tables import entitlements, plans
from billing.catalog import Catalog, Interval, Plan


@dataclass(frozen=True, slots=True)
class PlanVersion:
    id: UUID
    code: str
    version: int
    definition: dict[str, Any]

    def plan(self) -> Plan:
        return Plan.from_dict(self.definition)


@dataclass(frozen=True, slots=True)
class SyncedPlan:
    code: str
    version: int
    created: bool


# Serialises concurrent syncs (two processes starting at once) without a table lock.
_SYNC_LOCK_KEY = 0x6269_6C6C  # "bill"


async def sync_catalog(conn: AsyncConnection, catalog: Catalog) -> list[SyncedPlan]:
    """Insert a new version for every plan whose definition changed; existing rows never change."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SYNC_LOCK_KEY})
    synced: list[SyncedPlan] = []
    for plan in catalog.plans.values():
        fingerprint = plan.fingerprint()
        existing = (
            await conn.execute(
                select(plans.c.version).where(
                    plans.c.code == plan.code, plans.c.fingerprint == fingerprint
                )
            )
        ).scalar_one_or_none()
        if existing is not None:
            synced.append(SyncedPlan(plan.code, existing, created=False))
            continue
        latest = (
            await conn.execute(select(func.max(plans.c.version)).where(plans.c.code == plan.code))
        ).scalar_one()
        version = (latest or 0) + 1
        plan_id = (
            await conn.execute(
                plans.insert()
                .values(
                    code=plan.code,
                    version=version,
                    name=plan.name,
                    currency=plan.currency,
                    trial_days=plan.trial_days,
                    monthly_price=plan.price(Interval.MONTH),
                    annual_price=plan.price(Interval.YEAR),
                    definition=plan.to_dict(),
                    fingerprint=fingerprint,
                )
                .returning(plans.c.id)
            )
        ).scalar_one()
        await conn.execute(
            entitlements.insert(),
            [
                {
                    "plan_id": plan_id,
                    "metric": e.metric,
                    "included": e.included,
                    "cap": str(e.cap),
                    "overage_unit_price": e.overage_unit_price,
                    "overage_unit_size": e.overage_unit_size,
                }
                for e in plan.entitlements
            ],
        )
        synced.append(SyncedPlan(plan.code, version, created=True))
    return synced


async def latest_plan(conn: AsyncConnection, code: str) -> PlanVersion | None:
    row = (
        await conn.execute(
            select(plans.c.id, plans.c.code, plans.c.version, plans.c.definition)
            .where(plans.c.code == code)
            .order_by(plans.c.version.desc())
            .limit(1)
        )
    ).first()
    return PlanVersion(**row._mapping) if row else None


async def get_plan_version(conn: AsyncConnection, plan_id: UUID) -> PlanVersion | None:
    row = (
        await conn.execute(
            select(plans.c.id, plans.c.code, plans.c.version, plans.c.definition).where(
                plans.c.id == plan_id
            )
        )
    ).first()
    return PlanVersion(**row._mapping) if row else None
