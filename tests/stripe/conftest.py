"""Fixtures for the Stripe port: a session-wide localstripe server, the SDK gateway pointed at
it, the in-memory fake, and `gateway`, which runs a test against both so the fake stays honest.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import stripe

from adapters.stripe_fake import FakeStripeGateway
from adapters.stripe_sdk import StripeSdkGateway
from billing.payments import StripeGateway
from devstack.localstripe import LocalStripeError, LocalStripeServer, free_port

# localstripe accepts any key shaped like a secret key.
LOCALSTRIPE_API_KEY = "sk_test_localstripe"

_HERE = Path(__file__).parent

# stripe-python 16.1's HTTPXClient posts form bodies with httpx's deprecated `data=<str>`; the
# SDK's problem, not ours, so it is silenced for these tests only.
_SDK_HTTPX_WARNING = (
    "ignore:Use 'content=<...>' to upload raw bytes/text content:DeprecationWarning"
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.is_relative_to(_HERE):
            item.add_marker(pytest.mark.filterwarnings(_SDK_HTTPX_WARNING))


@pytest.fixture(scope="session")
def localstripe() -> Iterator[LocalStripeServer]:
    """localstripe on a free loopback port for the whole session, stopped by pid at the end."""
    last_error: LocalStripeError | None = None
    for _ in range(3):  # another process may grab the free port between probe and bind
        server = LocalStripeServer(free_port())
        try:
            server.start()
        except LocalStripeError as exc:
            last_error = exc
            continue
        try:
            yield server
        finally:
            server.stop()
        return
    raise RuntimeError(f"could not start localstripe: {last_error}")


@pytest.fixture
async def sdk_gateway(localstripe: LocalStripeServer) -> AsyncIterator[StripeSdkGateway]:
    async with StripeSdkGateway(LOCALSTRIPE_API_KEY, api_base=localstripe.url) as gateway:
        yield gateway


@pytest.fixture
def fake_gateway() -> FakeStripeGateway:
    return FakeStripeGateway()


@dataclass
class GatewayUnderTest:
    """A gateway plus what a test needs to observe money moving, whichever backend it is."""

    kind: str
    gateway: StripeGateway
    succeeded_charges: Callable[[str], Awaitable[int]]
    # The payment intent that paid an invoice, as a dispute would name it.
    payment_intent_of: Callable[[str], Awaitable[str]]


_names = itertools.count(1)


@pytest.fixture
def tenant_id(request: pytest.FixtureRequest) -> str:
    """A tenant id unique in the session: localstripe's state outlives each test."""
    return f"tenant-{request.node.name}-{next(_names)}"


@pytest.fixture(params=["fake", "localstripe"])
async def gateway(request: pytest.FixtureRequest) -> AsyncIterator[GatewayUnderTest]:
    if request.param == "fake":
        fake = FakeStripeGateway()

        async def fake_charges(customer_id: str) -> int:
            return sum(1 for c in fake.charges if c.customer_id == customer_id)

        async def fake_intent(invoice_id: str) -> str:
            return fake.payment_intent_of(invoice_id)

        yield GatewayUnderTest("fake", fake, fake_charges, fake_intent)
        return

    server: LocalStripeServer = request.getfixturevalue("localstripe")
    raw_http = stripe.HTTPXClient()
    raw = stripe.StripeClient(
        LOCALSTRIPE_API_KEY, base_addresses={"api": server.url}, http_client=raw_http
    )

    async def localstripe_charges(customer_id: str) -> int:
        charges = await raw.v1.charges.list_async(params={"customer": customer_id, "limit": 100})
        return sum(1 for c in charges.data if c["status"] == "succeeded")

    async def localstripe_intent(invoice_id: str) -> str:
        invoice = (await raw.v1.invoices.retrieve_async(invoice_id)).to_dict()
        return str(invoice["payment_intent"])

    try:
        async with StripeSdkGateway(LOCALSTRIPE_API_KEY, api_base=server.url) as sdk:
            yield GatewayUnderTest("localstripe", sdk, localstripe_charges, localstripe_intent)
    finally:
        close: Callable[[], Awaitable[None]] = raw_http.close_async  # untyped in the SDK
        await close()
