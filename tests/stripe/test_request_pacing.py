"""Stripe requests are paced per process (ADR 0025): Stripe's rate limit counts requests, and one
gateway call makes several, so the server's activity rate limit alone cannot bound them."""

from __future__ import annotations

import asyncio

import pytest

from adapters.stripe_fake import FakeStripeGateway
from adapters.stripe_pacing import RequestPacer
from adapters.stripe_sdk import PacedHTTPXClient, StripeSdkGateway
from billing.payments import InvoiceLine
from devstack.localstripe import LocalStripeServer

from .conftest import LOCALSTRIPE_API_KEY

LINES = [InvoiceLine("Base", 4900, "usd"), InvoiceLine("Overage", 100, "usd")]


class CountingPacer(RequestPacer):
    def __init__(self, requests_per_second: float) -> None:
        super().__init__(requests_per_second)
        self.granted: list[int] = []

    async def acquire(self) -> int:
        sent = await super().acquire()
        self.granted.append(sent)
        return sent


async def test_requests_leave_at_least_one_interval_apart_in_the_order_they_asked() -> None:
    pacer = RequestPacer(400)
    order: list[int] = []

    async def request(n: int) -> int:
        sent = await pacer.acquire()
        order.append(n)
        return sent

    sent = await asyncio.gather(*(request(n) for n in range(40)))

    assert order == list(range(40))
    gaps = [b - a for a, b in zip(sent, sent[1:], strict=False)]
    assert min(gaps) >= 2_500_000  # 1/400 s in ns: never two in one interval
    # So no one-second window holds more than the rate: here 40 requests span 39 intervals.
    assert sent[-1] - sent[0] >= 39 * 2_500_000


def test_the_interval_is_rounded_up_so_a_second_never_holds_one_more() -> None:
    # 1e9 / 3 is not whole: rounding down would let a fourth request into the second.
    assert RequestPacer(3)._interval_ns * 3 >= 1_000_000_000
    with pytest.raises(ValueError, match="positive"):
        RequestPacer(0)


async def test_the_fake_counts_and_paces_every_request_stripe_would_see() -> None:
    pacer = CountingPacer(1_000)
    fake = FakeStripeGateway(pacer=pacer)
    customer = await fake.ensure_customer("t1", None, "T", "customer:t1")
    fake.requests.clear()
    pacer.granted.clear()

    invoice = await fake.create_invoice(customer.id, LINES, {}, "invoice:i1")
    await fake.create_invoice(customer.id, LINES, {}, "invoice:i1")  # a retried activity
    await fake.retrieve_invoice(invoice.id)

    methods = [method for _, method in fake.requests]
    one_invoice = ["create_invoice_item", "create_invoice_item", "create_invoice"]
    one_invoice += ["finalize_invoice"]
    # Two items, the invoice and its finalisation; the replay costs as many; a read is one.
    assert methods == one_invoice * 2 + ["retrieve_invoice"]
    assert [sent for sent, _ in fake.requests] == pacer.granted


async def test_the_sdk_gateway_paces_each_http_request(localstripe: LocalStripeServer) -> None:
    pacer = CountingPacer(1_000)
    async with StripeSdkGateway(LOCALSTRIPE_API_KEY, api_base=localstripe.url, pacer=pacer) as gw:
        assert isinstance(gw._http_client, PacedHTTPXClient)
        customer = await gw.ensure_customer("pace-1", None, "P", "customer:pace-1")
        before = len(pacer.granted)
        await gw.create_invoice(customer.id, LINES, {"invoice_id": "i1"}, "invoice:pace-1")

    # One paced request per line, one for the invoice, one to finalise it.
    assert len(pacer.granted) - before == len(LINES) + 2
