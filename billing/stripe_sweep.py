"""The lost-webhook sweeper's rules (ADR 0013): which Stripe event a re-read invoice stands
for, and where the engine's invoice and Stripe's disagree. Pure."""

from __future__ import annotations

from dataclasses import dataclass

# The Stripe event a status found on a re-read stands for: the sweeper applies it through the
# same signal a webhook of that type would have sent.
EVENT_FOR_STATUS = {
    "paid": "invoice.paid",
    "void": "invoice.voided",
    "uncollectible": "invoice.marked_uncollectible",
}


@dataclass(frozen=True)
class InvoiceFigures:
    status: str
    amount_due: int
    amount_paid: int


def drift(engine: InvoiceFigures, stripe: InvoiceFigures) -> list[tuple[str, str, str]]:
    """(field, engine's value, Stripe's value) for each field that differs. A Stripe `open`
    or `draft` invoice matches the engine's `open` (Stripe finalises on payment)."""
    found = []
    stripe_status = "open" if stripe.status in ("open", "draft") else stripe.status
    if engine.status != stripe_status:
        found.append(("status", engine.status, stripe.status))
    if engine.amount_due != stripe.amount_due:
        found.append(("amount_due", str(engine.amount_due), str(stripe.amount_due)))
    if engine.amount_paid != stripe.amount_paid:
        found.append(("amount_paid", str(engine.amount_paid), str(stripe.amount_paid)))
    return found


def sweep_event_id(stripe_invoice_id: str, status: str) -> str:
    """The event id of a sweeper's finding: the same finding twice is applied once (the
    subscription remembers the event ids it has applied)."""
    return f"sweep:{stripe_invoice_id}:{status}"
