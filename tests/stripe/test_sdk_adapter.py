"""What the SDK adapter puts on the wire, and how it translates what comes back.

Wire checks run against localstripe through a recording HTTP client; error translation runs
against a scripted HTTP client (canned status codes and bodies, no server), because localstripe
cannot be made to answer 429, 5xx or 409 on demand."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import parse_qs

import pytest
import stripe

from adapters.stripe_sdk import STRIPE_API_VERSION, StripeSdkGateway
from billing.payments import (
    InvoiceLine,
    StripeAuthenticationError,
    StripeCardRejected,
    StripeGatewayError,
    StripeIdempotencyError,
    StripeInvalidRequest,
    StripeNotFound,
    StripeTransientError,
)
from devstack.localstripe import LocalStripeServer

from .conftest import LOCALSTRIPE_API_KEY


@dataclass
class SentRequest:
    method: str
    url: str
    headers: Mapping[str, str]
    body: dict[str, list[str]]


class RecordingHTTPClient(stripe.HTTPXClient):
    """The SDK's own async httpx client, remembering each request it sends."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[SentRequest] = []

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        self.sent.append(SentRequest(method, url, dict(headers), parse_qs(post_data or "")))
        return await super().request_async(method, url, headers, post_data)


class ScriptedHTTPClient(stripe.HTTPClient):
    """Answers each request with the next canned (status, body); counts requests."""

    name = "scripted"

    def __init__(self, *responses: tuple[int, dict[str, Any]] | Exception) -> None:
        super().__init__()
        self._responses = list(responses)
        self.sent: list[tuple[str, str]] = []

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        self.sent.append((method, url))
        response = self._responses.pop(0)
        if isinstance(response, Exception):
            raise response
        status, body = response
        return json.dumps(body).encode(), status, {"request-id": "req_test"}

    async def close_async(self) -> None:
        return None


def _scripted(
    *responses: tuple[int, dict[str, Any]] | Exception,
) -> tuple[StripeSdkGateway, ScriptedHTTPClient]:
    client = ScriptedHTTPClient(*responses)
    return StripeSdkGateway(
        "sk_test_scripted", api_base="http://127.0.0.1:9", http_client=client
    ), client


def _invoice_body(status: str = "open", **overrides: Any) -> dict[str, Any]:
    return {
        "id": "in_123",
        "object": "invoice",
        "status": status,
        "amount_due": 5000,
        "amount_paid": 5000 if status == "paid" else 0,
        "currency": "usd",
        "customer": "cus_123",
        "hosted_invoice_url": "https://invoice.stripe.com/i/acct/test",
        "invoice_pdf": "https://pay.stripe.com/invoice/acct/test/pdf",
        "metadata": {"invoice_id": "i1"},
        **overrides,
    }


def _error(kind: str, message: str, **fields: Any) -> dict[str, Any]:
    return {"error": {"type": kind, "message": message, **fields}}


# ---------------------------------------------------------------------------- on the wire


async def _full_flow(gateway: StripeSdkGateway, tenant: str) -> None:
    customer = await gateway.ensure_customer(tenant, "a@x.test", "A", f"customer:{tenant}")
    await gateway.attach_payment_method(customer.id, "pm_card_visa", f"payment-method:{tenant}:1")
    lines = [InvoiceLine("Base", 4900, "usd"), InvoiceLine("Overage", 100, "usd")]
    invoice = await gateway.create_invoice(
        customer.id, lines, {"invoice_id": "i1"}, f"invoice:{tenant}"
    )
    await gateway.pay_invoice(invoice.id, f"pay:{tenant}:1")
    await gateway.retrieve_invoice(invoice.id)


async def test_every_write_carries_the_callers_key_and_reads_carry_none(
    localstripe: LocalStripeServer,
) -> None:
    client = RecordingHTTPClient()
    async with StripeSdkGateway(
        LOCALSTRIPE_API_KEY, api_base=localstripe.url, http_client=client
    ) as gw:
        await _full_flow(gw, "wire-1")

    writes = [
        (
            re.sub(r"/(cus|pm|in)_\w+", r"/{\1}", r.url.removeprefix(localstripe.url)),
            r.headers.get("Idempotency-Key"),
        )
        for r in client.sent
        if r.method == "post"
    ]
    assert writes == [
        ("/v1/customers", "customer:wire-1"),
        ("/v1/payment_methods/{pm}/attach", "payment-method:wire-1:1"),
        ("/v1/customers/{cus}", "payment-method:wire-1:1:default"),
        ("/v1/invoiceitems", "invoice:wire-1:item:0"),
        ("/v1/invoiceitems", "invoice:wire-1:item:1"),
        ("/v1/invoices", "invoice:wire-1"),
        ("/v1/invoices/{in}/finalize", "invoice:wire-1:finalize"),
        ("/v1/invoices/{in}/pay", "pay:wire-1:1"),
    ]
    reads = [r for r in client.sent if r.method == "get"]
    assert reads
    assert all("Idempotency-Key" not in r.headers for r in reads)
    assert {r.headers["Stripe-Version"] for r in client.sent} == {STRIPE_API_VERSION}


async def test_keys_are_deterministic_across_gateways(localstripe: LocalStripeServer) -> None:
    runs = []
    for _ in range(2):
        client = RecordingHTTPClient()
        async with StripeSdkGateway(
            LOCALSTRIPE_API_KEY, api_base=localstripe.url, http_client=client
        ) as gw:
            await _full_flow(gw, "wire-2")
        runs.append([r.headers["Idempotency-Key"] for r in client.sent if r.method == "post"])

    assert runs[0] == runs[1]


async def test_invoice_request_leaves_collection_to_the_engine(
    localstripe: LocalStripeServer,
) -> None:
    client = RecordingHTTPClient()
    async with StripeSdkGateway(
        LOCALSTRIPE_API_KEY, api_base=localstripe.url, http_client=client
    ) as gw:
        await _full_flow(gw, "wire-3")

    (create,) = [r for r in client.sent if r.method == "post" and r.url.endswith("/v1/invoices")]
    assert create.body["collection_method"] == ["charge_automatically"]
    assert create.body["auto_advance"] == ["false"]
    assert create.body["pending_invoice_items_behavior"] == ["include"]
    assert create.body["currency"] == ["usd"]
    assert create.body["metadata[invoice_id]"] == ["i1"]
    items = [r for r in client.sent if r.url.endswith("/v1/invoiceitems")]
    assert [i.body["amount"] for i in items] == [["4900"], ["100"]]


def test_api_version_is_the_one_the_sdk_was_generated_for() -> None:
    # An SDK upgrade that moves the version must be a deliberate change of STRIPE_API_VERSION.
    from stripe._api_version import _ApiVersion

    assert STRIPE_API_VERSION == _ApiVersion.CURRENT


def test_constructing_a_gateway_sets_no_sdk_globals() -> None:
    StripeSdkGateway("sk_test_globals", api_base="http://127.0.0.1:9")
    assert stripe.api_key is None


def test_an_empty_api_key_is_refused() -> None:
    with pytest.raises(StripeAuthenticationError):
        StripeSdkGateway("")


# ---------------------------------------------------------------------------- error translation


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            429,
            _error("invalid_request_error", "Too many requests", code="rate_limit"),
            StripeTransientError,
        ),
        (500, _error("api_error", "Something went wrong"), StripeTransientError),
        (503, _error("api_error", "Unavailable"), StripeTransientError),
        (
            409,
            _error("idempotency_error", "A request with this key is in progress"),
            StripeTransientError,
        ),
        (
            400,
            _error(
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters",
            ),
            StripeIdempotencyError,
        ),
        (
            400,
            _error("invalid_request_error", "Missing required param: customer"),
            StripeInvalidRequest,
        ),
        (
            404,
            _error("invalid_request_error", "No such customer: 'cus_x'", code="resource_missing"),
            StripeNotFound,
        ),
        (
            401,
            _error("invalid_request_error", "Invalid API Key provided"),
            StripeAuthenticationError,
        ),
        (
            403,
            _error("invalid_request_error", "The provided key does not have access"),
            StripeAuthenticationError,
        ),
    ],
)
async def test_vendor_errors_become_billing_errors_after_exactly_one_request(
    status: int, body: dict[str, Any], expected: type[StripeGatewayError]
) -> None:
    gateway, client = _scripted((status, body))

    with pytest.raises(expected) as caught:
        await gateway.ensure_customer("t1", "a@x.test", "A", "customer:t1")

    assert type(caught.value) is expected
    assert caught.value.http_status == status
    assert caught.value.retryable is (expected is StripeTransientError)
    assert not isinstance(caught.value, stripe.StripeError)
    assert len(client.sent) == 1  # max_network_retries=0: Temporal owns retries


async def test_a_connection_failure_is_transient() -> None:
    gateway, client = _scripted(
        cast(Any, stripe.APIConnectionError)("connection reset", should_retry=True)
    )

    with pytest.raises(StripeTransientError):
        await gateway.retrieve_invoice("in_123")
    assert len(client.sent) == 1


async def test_a_card_error_on_pay_is_a_decline_outcome() -> None:
    gateway, _ = _scripted(
        (
            402,
            _error(
                "card_error",
                "Your card has insufficient funds.",
                code="card_declined",
                decline_code="insufficient_funds",
            ),
        ),
        (200, _invoice_body("open")),
    )

    outcome = await gateway.pay_invoice("in_123", "pay:i1:1")

    assert not outcome.succeeded
    assert not outcome.requires_action
    assert outcome.decline_code == "insufficient_funds"
    assert outcome.failure_message == "Your card has insufficient funds."
    assert outcome.invoice.status == "open"
    assert outcome.invoice.hosted_invoice_url == "https://invoice.stripe.com/i/acct/test"


async def test_a_pay_needing_3d_secure_is_a_requires_action_outcome() -> None:
    gateway, _ = _scripted(
        (
            402,
            _error(
                "card_error",
                "This payment requires additional user action.",
                code="invoice_payment_intent_requires_action",
            ),
        ),
        (200, _invoice_body("open")),
    )

    outcome = await gateway.pay_invoice("in_123", "pay:i1:1")

    assert outcome.requires_action
    assert not outcome.succeeded
    assert outcome.decline_code == "authentication_required"


async def test_already_paid_is_success_without_a_second_charge() -> None:
    gateway, client = _scripted(
        (
            400,
            _error("invalid_request_error", "Invoice is already paid", code="invoice_already_paid"),
        ),
        (200, _invoice_body("paid")),
    )

    outcome = await gateway.pay_invoice("in_123", "pay:i1:2")

    assert outcome.succeeded
    assert outcome.invoice.amount_paid == 5000
    assert [m for m, _ in client.sent] == ["post", "get"]


async def test_a_card_error_on_attach_is_a_rejected_card() -> None:
    gateway, _ = _scripted(
        (
            402,
            _error(
                "card_error",
                "Your card was declined.",
                code="card_declined",
                decline_code="do_not_honor",
            ),
        ),
    )

    with pytest.raises(StripeCardRejected) as caught:
        await gateway.attach_payment_method("cus_123", "pm_123", "payment-method:t1:1")
    assert caught.value.stripe_code == "do_not_honor"


async def test_health_check_reports_a_bad_key() -> None:
    gateway, _ = _scripted((401, _error("invalid_request_error", "Invalid API Key provided")))

    with pytest.raises(StripeAuthenticationError):
        await gateway.health_check()
