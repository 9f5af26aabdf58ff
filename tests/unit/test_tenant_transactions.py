"""Lint: code that works for one tenant opens `tenant_transaction(tenant_id)`, so RLS applies
to the worker role too (its login is BYPASSRLS): activities, operator routes, adapters. A plain
`transaction()` (the login role, every tenant visible) is allowed only in the places listed
here, each with its reason; a new one fails this test until it is either tenant-scoped or
listed with a reason."""

from __future__ import annotations

import ast
from pathlib import Path

from config import ROOT

# (module, function) -> why the work spans tenants.
CROSS_TENANT = {
    ("activities/billing_store.py", "_invoice_tenant"): (
        "finds whose invoice it is, by the engine's own primary key, before the tenant write"
    ),
    ("activities/stripe_events.py", "resolve_stripe_event"): (
        "the inbox row has no tenant yet: resolving which tenant a Stripe event concerns is "
        "the point (lookups by Stripe ids across tenants)"
    ),
    ("activities/stripe_events.py", "project_stripe_event"): (
        "reads the inbox row only; its writes run in the resolved tenant's transaction"
    ),
    ("activities/stripe_events.py", "mark_stripe_event"): "inbox bookkeeping, by event id",
    ("activities/stripe_events.py", "apply_dispute"): (
        "reads the inbox row and finds the invoice's tenant by its Stripe id; its writes run in "
        "that tenant's transaction"
    ),
    ("activities/notifications.py", "deliver_notification"): (
        "the delivery workflow knows only the delivery id (an engine-made key); the row says "
        "whose it is, and the write touches that row only"
    ),
    ("activities/notifications.py", "mark_notification"): "outbox bookkeeping, by delivery id",
    ("activities/usage_store.py", "reconcile_usage_days"): (
        "reconciliation recomputes every tenant's daily totals from raw events"
    ),
    ("activities/usage_store.py", "find_missing_grace_windows"): (
        "a sweeper: finds soft-capped counters of any tenant that have no grace window"
    ),
    ("api/auth.py", "principal_for_key"): "finds whose key it is (a read by the key's hash)",
    ("api/routes/operator.py", "create_tenant"): "creates the tenant: there is none to scope to",
    ("api/routes/operator.py", "revoke_api_key"): ("by key id; operator keys belong to no tenant"),
    ("api/routes/operator_webhooks.py", "list_dead_letters"): "the inbox spans tenants",
    ("api/routes/operator_webhooks.py", "get_event"): "the inbox spans tenants",
    ("api/routes/operator_webhooks.py", "replay"): "the inbox spans tenants",
    ("api/routes/usage_operator.py", "reconcile_usage"): "reconciles every tenant's usage",
    ("cli/seed.py", "_sync"): "the plan catalog belongs to no tenant",
    ("cli/operator_key.py", "_create"): "operator keys belong to no tenant",
    ("cli/reconcile.py", "reconcile_usage"): "reconciles every tenant's usage",
    ("adapters/metrics.py", "refresh_once"): "the operators' gauges count across tenants",
    ("cli/reconcile.py", "run"): "reconciles every tenant's usage (the CLI's body)",
    ("adapters/dispatch.py", "replay_stripe_events"): "the inbox spans tenants",
    ("adapters/dispatch.py", "redispatch_once"): (
        "the re-dispatcher sweeps every tenant's inbox and outbox rows"
    ),
    ("cli/webhooks.py", "print_dead_letters"): "the inbox spans tenants",
    ("cli/webhooks.py", "replay"): "the inbox spans tenants",
    ("activities/stripe_sweep.py", "find_stale_invoices"): (
        "the lost-webhook sweeper looks at every tenant's open invoices"
    ),
    ("activities/erasure.py", "tombstone_tenant"): (
        "the audit redaction is a function of its own (it updates rows RLS-scoped writes may "
        "not); the tenant's own rows are tombstoned in its scoped transaction first"
    ),
    ("services/audit.py", "page"): "operators read every tenant's audit rows",
    ("services/audit.py", "export_rows"): "operators export every tenant's audit rows",
    ("activities/audit.py", "purge_audit_log"): "the retention purge spans every tenant's rows",
    ("services/coupons.py", "create_coupon"): "the coupon catalog is no tenant's",
    ("services/coupons.py", "list_coupons"): "the coupon catalog is no tenant's",
    ("services/coupons.py", "create_promotion_code"): "the coupon catalog is no tenant's",
    ("activities/audit.py", "purge_erased_books"): (
        "which erased tenants are past retention is a question across tenants; each is purged "
        "by its own function (SECURITY DEFINER), which deletes that tenant's rows only"
    ),
    ("services/reports.py", "revenue"): "the revenue report sums every tenant's figures",
}


def _plain_transactions() -> set[tuple[str, str]]:
    found: set[tuple[str, str]] = set()
    paths = [
        p
        for folder in ("activities", "services", "api", "adapters", "cli")
        for p in (ROOT / folder).rglob("*.py")
    ]
    for path in sorted(paths):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr == "transaction"
                ):
                    found.add((str(path.relative_to(ROOT)), fn.name))
    return found


def test_only_listed_places_open_cross_tenant_transactions() -> None:
    unlisted = _plain_transactions() - set(CROSS_TENANT)
    assert not unlisted, (
        f"{sorted(unlisted)} open a transaction with no tenant as the BYPASSRLS worker role: use "
        "tenant_transaction(tenant_id), or list the function in CROSS_TENANT with the reason"
    )


def test_the_list_has_no_stale_entries() -> None:
    assert set(CROSS_TENANT) <= _plain_transactions()
    assert all(CROSS_TENANT.values())


def test_the_worker_database_switches_role() -> None:
    source = Path(ROOT / "worker.py").read_text()
    assert "scoped_role=WORKER_SCOPED_ROLE" in source
