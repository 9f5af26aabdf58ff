"""Custom search attributes operators filter on in the Temporal UI.

Registered by `billing dev` (``--search-attribute Name=Type``) and by the test harness; the names
are stored in workflow histories, so never rename one without a migration plan.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeKey

TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
SUBSCRIPTION_ID = SearchAttributeKey.for_keyword("SubscriptionId")
PLAN_CODE = SearchAttributeKey.for_keyword("PlanCode")
SUBSCRIPTION_STATUS = SearchAttributeKey.for_keyword("SubscriptionStatus")
NEXT_BILLING_AT = SearchAttributeKey.for_datetime("NextBillingAt")
INVOICE_ID = SearchAttributeKey.for_keyword("InvoiceId")
# Dunning: when the next payment retry is due (unset once dunning has finished), so the list
# view answers "who is in dunning, retried when" without opening a history.
NEXT_RETRY_AT = SearchAttributeKey.for_datetime("NextRetryAt")

ALL = (
    TENANT_ID,
    SUBSCRIPTION_ID,
    PLAN_CODE,
    SUBSCRIPTION_STATUS,
    NEXT_BILLING_AT,
    INVOICE_ID,
    NEXT_RETRY_AT,
)

# Type names as the `temporal` CLI spells them for `--search-attribute Name=Type`.
CLI_TYPE_NAMES = {"KEYWORD": "Keyword", "DATETIME": "Datetime", "TEXT": "Text", "INT": "Int"}


def cli_flags() -> list[str]:
    """`temporal server start-dev` flags registering every attribute above."""
    flags: list[str] = []
    for key in ALL:
        flags += ["--search-attribute", f"{key.name}={CLI_TYPE_NAMES[key.indexed_value_type.name]}"]
    return flags
