"""The audit log's retention purge (`audit_retention`, ADR 0017)."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities.errors import domain_errors
from adapters.db import audit as audit_repo
from adapters.db.session import Database
from workflows.audit_retention_io import PurgeInput, PurgeResult


class AuditActivities:
    def __init__(self, db: Database) -> None:
        self._db = db

    @activity.defn(name="purge_audit_log")
    @domain_errors
    async def purge_audit_log(self, input: PurgeInput) -> PurgeResult:
        """Every tenant's rows older than the cutoff, by the purge function (idempotent: a
        retry purges what is left, which is nothing)."""
        async with self._db.transaction() as conn:
            purged = await audit_repo.purge_before(
                conn, datetime.fromisoformat(input.before), input.actor
            )
        return PurgeResult(input.before, purged)
