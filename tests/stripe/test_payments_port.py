"""The port itself: pure, typed errors that activities can classify, money as integers."""

from __future__ import annotations

import pickle
import subprocess
import sys

import pytest

from billing.errors import BillingError, PaymentDeclined
from billing.payments import (
    InvoiceLine,
    StripeAuthenticationError,
    StripeCardRejected,
    StripeGatewayError,
    StripeIdempotencyError,
    StripeInvalidRequest,
    StripeInvoice,
    StripeNotFound,
    StripePaymentMethodMissing,
    StripeTransientError,
    invoice_item_key,
    parse_invoice_status,
)

ERRORS: list[type[StripeGatewayError]] = [
    StripeGatewayError,
    StripeTransientError,
    StripeInvalidRequest,
    StripeNotFound,
    StripeIdempotencyError,
    StripePaymentMethodMissing,
    StripeCardRejected,
    StripeAuthenticationError,
]


def test_the_port_imports_no_vendor_or_framework_code() -> None:
    probe = (
        "import sys, billing.payments; "
        "vendors = {'stripe', 'httpx', 'temporalio', 'sqlalchemy', 'fastapi', 'config'}; "
        "bad = vendors & set(sys.modules); "
        "sys.exit(','.join(sorted(bad)) or None)"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_only_transient_errors_are_retryable() -> None:
    assert [e for e in ERRORS if e.retryable] == [StripeTransientError]


def test_error_codes_are_distinct_and_errors_are_billing_errors() -> None:
    assert len({e.code for e in ERRORS}) == len(ERRORS)
    assert all(issubclass(e, BillingError) for e in ERRORS)
    assert issubclass(StripeNotFound, StripeInvalidRequest)
    assert issubclass(StripeIdempotencyError, StripeInvalidRequest)
    assert issubclass(StripeCardRejected, PaymentDeclined)


@pytest.mark.parametrize("error_type", ERRORS)
def test_errors_survive_pickling_with_their_fields(error_type: type[StripeGatewayError]) -> None:
    error = error_type("boom", stripe_code="card_declined", http_status=402, request_id="req_1")

    copy = pickle.loads(pickle.dumps(error))

    assert type(copy) is error_type
    assert (copy.message, copy.stripe_code, copy.http_status, copy.request_id) == (
        "boom",
        "card_declined",
        402,
        "req_1",
    )


@pytest.mark.parametrize("amount", [12.5, True, "100"])
def test_invoice_lines_refuse_non_integer_amounts(amount: object) -> None:
    with pytest.raises(TypeError):
        InvoiceLine("Base", amount, "usd")  # type: ignore[arg-type]


@pytest.mark.parametrize("currency", ["USD", "us", "usdd", "u$d"])
def test_invoice_lines_want_lower_case_iso_currencies(currency: str) -> None:
    with pytest.raises(ValueError, match="currency"):
        InvoiceLine("Base", 100, currency)


def test_negative_lines_are_credits() -> None:
    assert InvoiceLine("Unused time", -1500, "eur").amount == -1500


def test_invoice_status_is_checked() -> None:
    assert parse_invoice_status("uncollectible") == "uncollectible"
    with pytest.raises(ValueError, match="unknown invoice status"):
        parse_invoice_status("deleted")
    with pytest.raises(ValueError, match="unknown invoice status"):
        StripeInvoice("in_1", "pending", 0, 0, "usd", None, None, "cus_1")  # type: ignore[arg-type]


def test_item_keys_derive_from_the_invoice_key() -> None:
    assert invoice_item_key("invoice:42", 0) == "invoice:42:item:0"
