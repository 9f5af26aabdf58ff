"""The retention purges: the audit log's (`audit_retention`, ADR 0017) and an erased tenant's
books (`erased_books_purge`, ADR 0018)."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from activities.errors import domain_errors
from adapters.db import audit as audit_repo
from adapters.db import erasure as erasure_repo
from adapters.db.session import Database
from workflows.audit_retention_io import BooksPurgeResult, PurgeInput, PurgeResult


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

    @activity.defn(name="purge_erased_books")
    @domain_errors
    async def purge_erased_books(self, input: PurgeInput) -> BooksPurgeResult:
        """Each tenant erased before the cutoff, purged in a transaction of its own (a retry
        finds the purged ones gone and goes on with the rest)."""
        before = datetime.fromisoformat(input.before)
        async with self._db.transaction() as conn:  # cross-tenant: which tenants are due
            due = await erasure_repo.erased_before(conn, before)
        tenants = rows = 0
        for tenant_id in due:
            async with self._db.transaction() as conn:  # the function runs as its owner
                purged = await erasure_repo.purge_books(conn, tenant_id, before, input.actor)
            tenants += purged > 0
            rows += purged
            activity.heartbeat(str(tenant_id))
        return BooksPurgeResult(input.before, tenants, rows)
