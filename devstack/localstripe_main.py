"""Run localstripe (a stateful fake Stripe server) on one host/port, in memory, quietly.

    python -m devstack.localstripe_main --port 8420 [--host 127.0.0.1]

localstripe is GPL-3.0. It is a dev/test dependency that only ever runs as this separate
process (started by `devstack.localstripe.LocalStripeServer`); the engine never imports it.

What this runner changes, and why:

- Persistence off. Stock localstripe pickles its whole store to /tmp/localstripe.pickle on every
  write (about 9x slower, and parallel runs overwrite each other) and reloads it at start.
- Loopback only. Stock `localstripe --port N` binds every interface.
- Shims for the Stripe behaviour the engine relies on and localstripe 1.15.10 lacks, so the SDK
  adapter sends real Stripe requests to both (each shim is small and refuses what it does not
  model rather than pretending):
  * `POST /v1/invoices` without a subscription (an invoice from pending items) answers 404
    "No upcoming invoices for customer"; it also crashes (HTTP 500) on `collection_method`,
    `auto_advance` and `currency`, and drops `metadata`.
  * `POST /v1/invoices/{id}/finalize` and `POST /v1/invoices/{id}/mark_uncollectible` do not
    exist; `void` fails (400) on an invoice that was never charged, and accepts drafts.
  * Credit notes (`/v1/credit_notes`) do not exist. The shim models the one kind the engine
    issues: a credit note on an open (or uncollectible) invoice that lowers its amount due
    (localstripe's amount due is its total, so the total goes down with it); one that brings
    it to zero settles the invoice as Stripe does. Credit notes on paid invoices are refused.
  * Test payment method aliases for 3-D Secure (`pm_card_authenticationRequired`,
    `pm_card_threeDSecure2Required`) are unknown, although localstripe models the cards.
"""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from aiohttp import web

# Import order matters: localstripe.server registers the "extra" routes from
# resources.extra_apis at import time, so the shims are installed on resources first.
from localstripe import resources
from localstripe.errors import UserError

_THREE_D_SECURE_TEST_CARDS = {
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_threeDSecure2Required": "4000000000003220",
}

_CANCELABLE_INTENT_STATUSES = frozenset(
    {"requires_payment_method", "requires_capture", "requires_confirmation", "requires_action"}
)


def _disable_persistence() -> None:
    resources.Store.dump_to_disk = lambda self: None
    resources.Store.try_load_from_disk = lambda self: None


def _shim_invoice_create() -> None:
    invoice_cls: Any = resources.Invoice
    original_create = invoice_cls._api_create.__func__

    def create(
        cls: Any,
        customer: Any = None,
        subscription: Any = None,
        currency: Any = None,
        collection_method: Any = None,
        auto_advance: Any = None,  # localstripe never advances invoices on its own anyway
        pending_invoice_items_behavior: Any = None,
        metadata: Any = None,
        description: Any = None,
        default_tax_rates: Any = None,
        tax_percent: Any = None,
    ) -> Any:
        if collection_method not in (None, "charge_automatically"):
            raise UserError(400, "localstripe shim: only charge_automatically is modelled")
        if pending_invoice_items_behavior not in (None, "include"):
            raise UserError(400, "localstripe shim: only pending_invoice_items_behavior=include")
        if metadata is not None and not isinstance(metadata, dict):
            raise UserError(400, "Bad request")
        if subscription is not None:
            invoice = original_create(
                cls,
                customer=customer,
                subscription=subscription,
                tax_percent=tax_percent,
                default_tax_rates=default_tax_rates,
                description=description,
            )
        else:
            # The constructor sweeps the customer's pending invoice items, as Stripe does.
            invoice = cls(
                customer=customer,
                description=description,
                default_tax_rates=default_tax_rates,
            )
        invoice.metadata = dict(metadata or {})
        if currency is not None and not invoice.lines._list:
            invoice.currency = currency
        return invoice

    invoice_cls._api_create = classmethod(create)


def _shim_invoice_states() -> None:
    invoice_cls: Any = resources.Invoice
    base_status = invoice_cls.status.fget

    def status(self: Any) -> str:
        current: str = base_status(self)
        if current == "open" and getattr(self, "_uncollectible", False):
            return "uncollectible"
        return current

    invoice_cls.status = property(status)

    def finalize(id: str, auto_advance: Any = None, **kwargs: Any) -> Any:
        obj = invoice_cls._api_retrieve(id)
        if obj.status != "draft":
            raise UserError(400, "This invoice is already finalized.")
        obj._finalize()
        resources.schedule_webhook(resources.Event("invoice.finalized", obj))
        return obj

    def mark_uncollectible(id: str, **kwargs: Any) -> Any:
        obj = invoice_cls._api_retrieve(id)
        if obj.status != "open":
            raise UserError(400, f"You cannot mark a {obj.status} invoice as uncollectible.")
        obj._uncollectible = True
        obj.status_transitions["marked_uncollectible_at"] = int(time.time())
        resources.schedule_webhook(resources.Event("invoice.marked_uncollectible", obj))
        return obj

    def reopening(action: Any) -> Any:
        # Stripe can still pay an uncollectible invoice; localstripe only pays "open" ones.
        def run(id: str, **kwargs: Any) -> Any:
            obj = invoice_cls._api_retrieve(id)
            was_uncollectible = getattr(obj, "_uncollectible", False)
            obj._uncollectible = False
            try:
                return action(id, **kwargs)
            finally:
                if base_status(obj) == "open":
                    obj._uncollectible = was_uncollectible

        return run

    def void(id: str, **kwargs: Any) -> Any:
        # Stock void cancels `invoice.payment_intent` unconditionally, so an invoice that was
        # never charged cannot be voided (400); and Stripe voids only open/uncollectible ones.
        obj = invoice_cls._api_retrieve(id)
        if obj.status not in ("open", "uncollectible"):
            raise UserError(400, f"You can only void an open invoice; this one is {obj.status}.")
        if obj.payment_intent:
            intent = resources.PaymentIntent._api_retrieve(obj.payment_intent)
            if intent.status in _CANCELABLE_INTENT_STATUSES:
                resources.PaymentIntent._api_cancel(obj.payment_intent)
        obj._uncollectible = False
        obj._voided = True
        obj.status_transitions["voided_at"] = int(time.time())
        if obj.subscription:
            resources.Subscription._api_retrieve(obj.subscription)._on_initial_payment_voided(obj)
        resources.schedule_webhook(resources.Event("invoice.voided", obj))
        return obj

    replaced = {
        ("POST", "/v1/invoices/{id}/pay"): reopening(invoice_cls._api_pay_invoice),
        ("POST", "/v1/invoices/{id}/void"): void,
    }
    resources.extra_apis[:] = [
        (method, url, replaced.get((method, url), func))
        for method, url, func in resources.extra_apis
    ]
    resources.extra_apis.extend(
        [
            ("POST", "/v1/invoices/{id}/finalize", finalize),
            ("POST", "/v1/invoices/{id}/mark_uncollectible", mark_uncollectible),
        ]
    )


def _shim_credit_notes() -> None:
    invoice_cls: Any = resources.Invoice
    base_total = invoice_cls.total.fget

    def total(self: Any) -> int:
        return max(0, int(base_total(self)) - getattr(self, "_pre_payment_credit", 0))

    invoice_cls.total = property(total)

    class CreditNote(resources.StripeObject):  # type: ignore[misc]
        object = "credit_note"
        _id_prefix = "cn_"

        def __init__(
            self,
            invoice: Any = None,
            amount: Any = None,
            metadata: Any = None,
            memo: Any = None,
            **kwargs: Any,
        ) -> None:
            if kwargs:
                raise UserError(
                    400, "localstripe shim: only invoice, amount, metadata and memo are modelled"
                )
            amount = resources.try_convert_to_int(amount)
            if type(invoice) is not str or type(amount) is not int or amount <= 0:
                raise UserError(400, "Bad request")
            if metadata is not None and not isinstance(metadata, dict):
                raise UserError(400, "Bad request")
            inv = invoice_cls._api_retrieve(invoice)
            if inv.status not in ("open", "uncollectible"):
                raise UserError(
                    400,
                    "localstripe shim: only credit notes on open invoices are modelled "
                    f"(this one is {inv.status})",
                )
            if amount > inv.amount_due:
                raise UserError(
                    400,
                    f"The credit note amount ({amount}) is greater than the amount due on the "
                    f"invoice ({inv.amount_due})",
                )
            super().__init__()
            self.invoice = invoice
            self.customer = inv.customer
            self.amount = amount
            self.currency = inv.currency
            self.metadata = dict(metadata or {})
            self.memo = memo
            self.status = "issued"
            self.type = "pre_payment"
            self.pre_payment_amount = amount
            self.post_payment_amount = 0
            inv._pre_payment_credit = getattr(inv, "_pre_payment_credit", 0) + amount
            inv.pre_payment_credit_notes_amount = inv._pre_payment_credit
            resources.schedule_webhook(resources.Event("credit_note.created", self))
            if inv.status == "paid":  # credited in full: settled, as Stripe does
                inv._on_payment_success()

        @classmethod
        def _api_list_all(
            cls, url: Any, invoice: Any = None, limit: Any = None, starting_after: Any = None
        ) -> Any:
            listed = super()._api_list_all(url, limit=limit, starting_after=starting_after)
            listed._list = [n for n in listed._list if invoice is None or n.invoice == invoice]
            return listed

    def create(**data: Any) -> Any:
        return CreditNote(**data)

    def list_all(**data: Any) -> Any:
        return CreditNote._api_list_all("/v1/credit_notes", **data)

    def retrieve(id: str, **kwargs: Any) -> Any:
        return CreditNote._api_retrieve(id)

    resources.extra_apis.extend(
        [
            ("POST", "/v1/credit_notes", create),
            ("GET", "/v1/credit_notes", list_all),
            ("GET", "/v1/credit_notes/{id}", retrieve),
        ]
    )


def _shim_test_cards() -> None:
    pm_cls: Any = resources.PaymentMethod
    original = pm_cls._try_get_canonical_test_article.__func__

    def canonical(cls: Any, id: str) -> Any:
        number = _THREE_D_SECURE_TEST_CARDS.get(id)
        if number is not None:
            card = {"number": number, "exp_month": "12", "exp_year": "2030", "cvc": "123"}
            return cls(type="card", card=card)
        return original(cls, id)

    pm_cls._try_get_canonical_test_article = classmethod(canonical)


def build_app() -> web.Application:
    _disable_persistence()
    _shim_invoice_create()
    _shim_invoice_states()
    _shim_credit_notes()
    _shim_test_cards()
    from localstripe.server import app  # registers routes from the patched extra_apis

    application: web.Application = app
    return application


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING)
    for name in ("aiohttp", "aiohttp.access", "aiohttp.server"):
        logging.getLogger(name).setLevel(logging.WARNING)

    # run_app handles SIGTERM/SIGINT with a graceful shutdown; no access log, no banner.
    web.run_app(build_app(), host=args.host, port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
