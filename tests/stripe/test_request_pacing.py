"""Stripe requests are paced per process (ADR 0025): Stripe's rate limit counts requests, and one
gateway call makes several, so the server's activity rate limit alone cannot bound them."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import SecretStr

from adapters.stripe_fake import FakeStripeGateway
from adapters.stripe_pacing import RequestPacer
from adapters.stripe_sdk import PacedHTTPXClient, StripeSdkGateway, build_gateway
from billing.payments import InvoiceLine
from config import Settings
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


async def test_no_second_ever_holds_more_requests_than_the_rate_in_the_order_asked() -> None:
    pacer = RequestPacer(100)
    order: list[int] = []

    async def request(n: int) -> int:
        sent = await pacer.acquire()
        order.append(n)
        return sent

    sent = await asyncio.gather(*(request(n) for n in range(250)))

    assert order == list(range(250))
    # Sliding windows: the 101st request after any one leaves a full second later or more.
    assert all(b - a >= 1_000_000_000 for a, b in zip(sent, sent[100:], strict=False))
    # The first second's budget is used at once, so 250 requests take two seconds, not 2.5.
    assert sent[99] - sent[0] < 500_000_000
    assert sent[-1] - sent[0] < 2_900_000_000


def test_a_fractional_rate_rounds_down_and_a_slow_one_spaces_requests() -> None:
    assert (RequestPacer(20.5).capacity, RequestPacer(20.5).window_ns) == (20, 1_000_000_000)
    # 1e9 / 3 * 10 is not whole: the spacing is rounded up, never down.
    slow = RequestPacer(0.3)
    assert slow.capacity == 1
    assert slow.window_ns * 0.3 >= 1_000_000_000
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


async def test_every_gateway_the_processes_build_is_paced_at_the_configured_rate() -> None:
    # build_gateway is the one place the worker, the API and the CLI get their Stripe client.
    settings = Settings(
        stripe_api_key=SecretStr("sk_test_pacing"),
        stripe_api_base="http://127.0.0.1:9",
        stripe_requests_per_second=7,
    )
    gateway = build_gateway(settings)
    assert isinstance(gateway, StripeSdkGateway)
    try:
        client = gateway._http_client
        assert isinstance(client, PacedHTTPXClient)
        assert client._pacer.requests_per_second == 7
    finally:
        await gateway.aclose()
