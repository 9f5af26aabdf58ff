"""The Stripe port: engine-owned payment types and the `StripeGateway` protocol.

Stripe is the payment and invoice-document system; the engine owns the billing clock and the
amounts. Everything the engine needs from Stripe goes through `StripeGateway`, so workflows and
activities never see vendor objects or vendor errors. Two implementations exist:
`adapters.stripe_sdk.StripeSdkGateway` (the official SDK, contract-tested against localstripe)
and `adapters.stripe_fake.FakeStripeGateway` (in memory, for workflow and activity tests).

Idempotency: every write takes an explicit `idempotency_key` derived by the caller from business
identity (`customer:{tenant_id}`, `invoice:{invoice_id}`, `pay:{invoice_id}:{attempt}`). Replaying
a write with the same key and the same parameters returns the first result without a second
effect; the same key with different parameters is rejected (`StripeIdempotencyError`). Stripe
keeps keys for at least 24 hours, so retry policies around these calls must give up well within
that window; the engine's Postgres rows, not the keys, are the long-term memory.

This module is pure: stdlib and `billing` only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final, Literal, Protocol, get_args

from billing.errors import BillingError, PaymentDeclined

InvoiceStatus = Literal["draft", "open", "paid", "void", "uncollectible"]
INVOICE_STATUSES: Final[frozenset[str]] = frozenset(get_args(InvoiceStatus))

# Stripe rejects idempotency keys longer than 255 characters.
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255


# --------------------------------------------------------------------------------------------
# Errors. A card decline during `pay_invoice` is data (`PaymentOutcome`), never one of these.
# --------------------------------------------------------------------------------------------


class StripeGatewayError(BillingError):
    """Stripe could not do what was asked. `retryable` tells activities how to surface it."""

    code: ClassVar[str] = "stripe_error"
    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        stripe_code: str | None = None,
        http_status: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.stripe_code = stripe_code
        self.http_status = http_status
        self.request_id = request_id

    def __reduce__(self) -> tuple[object, ...]:
        # Keep the structured fields across pickling (process pools, test runners).
        return (
            _rebuild_gateway_error,
            (type(self), self.message, self.stripe_code, self.http_status, self.request_id),
        )


def _rebuild_gateway_error(
    cls: type[StripeGatewayError],
    message: str,
    stripe_code: str | None,
    http_status: int | None,
    request_id: str | None,
) -> StripeGatewayError:
    return cls(message, stripe_code=stripe_code, http_status=http_status, request_id=request_id)


class StripeTransientError(StripeGatewayError):
    """Rate limit, connection failure, 5xx, or a concurrent request on the same key: retry."""

    code: ClassVar[str] = "stripe_transient"
    retryable: ClassVar[bool] = True


class StripeInvalidRequest(StripeGatewayError):
    """Stripe refused the request as malformed or not allowed in the object's state."""

    code: ClassVar[str] = "stripe_invalid_request"


class StripeNotFound(StripeInvalidRequest):
    """The Stripe object does not exist (HTTP 404)."""

    code: ClassVar[str] = "stripe_not_found"


class PaymentMethodUnavailable(StripeInvalidRequest):
    """The payment method belongs to another customer (another tenant's card). The message says
    no more than for an unknown id, so a caller learns nothing about other accounts."""

    code: ClassVar[str] = "payment_method_unavailable"


def unusable_payment_method_message(payment_method_id: str) -> str:
    return f"payment method {payment_method_id!r} does not exist or cannot be used by this account"


class StripeIdempotencyError(StripeInvalidRequest):
    """The idempotency key was already used with different parameters: a caller bug."""

    code: ClassVar[str] = "stripe_idempotency_error"


class StripePaymentMethodMissing(StripeInvalidRequest):
    """The customer has no default payment method to charge; they must add a card first."""

    code: ClassVar[str] = "stripe_payment_method_missing"


class StripeCardRejected(StripeGatewayError, PaymentDeclined):
    """A card was refused while being attached (not while paying: that is a PaymentOutcome)."""

    code: ClassVar[str] = "stripe_card_rejected"


class StripeAuthenticationError(StripeGatewayError):
    """The API key is missing, wrong, or lacks permission: configuration, not retryable."""

    code: ClassVar[str] = "stripe_authentication_error"


# --------------------------------------------------------------------------------------------
# Engine-owned types. Amounts are integer minor units; currencies are lower-case ISO codes.
# --------------------------------------------------------------------------------------------


def _check_currency(currency: str) -> None:
    if len(currency) != 3 or not currency.isascii() or not currency.isalpha():
        raise ValueError(f"currency must be a 3-letter ISO code, got {currency!r}")
    if currency != currency.lower():
        raise ValueError(f"currency must be lower-case, got {currency!r}")


def _check_minor_units(name: str, value: int) -> None:
    # bool is an int subclass and a float here would be a money bug: both are refused.
    if type(value) is not int:
        raise TypeError(f"{name} must be an int in minor units, got {type(value).__name__}")


@dataclass(frozen=True)
class StripeCustomer:
    id: str
    email: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CardDetails:
    """What the engine may store about a card: never the number."""

    payment_method_id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int


@dataclass(frozen=True)
class InvoiceLine:
    """One Stripe invoice item. Negative amounts are credits (e.g. unused time on a downgrade)."""

    description: str
    amount: int
    currency: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_minor_units("amount", self.amount)
        _check_currency(self.currency)


@dataclass(frozen=True)
class StripeInvoice:
    id: str
    status: InvoiceStatus
    amount_due: int
    amount_paid: int
    currency: str
    hosted_invoice_url: str | None
    invoice_pdf: str | None
    customer_id: str
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_minor_units("amount_due", self.amount_due)
        _check_minor_units("amount_paid", self.amount_paid)
        if self.status not in INVOICE_STATUSES:
            raise ValueError(f"unknown invoice status {self.status!r}")


@dataclass(frozen=True)
class StripeCreditNote:
    """A credit note that lowered an open invoice's amount due, and the invoice after it."""

    id: str
    amount: int
    invoice: StripeInvoice
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_minor_units("amount", self.amount)


@dataclass(frozen=True)
class StripeRefund:
    """A refund of (part of) an invoice's payment."""

    id: str
    amount: int
    status: str  # succeeded | pending | failed | canceled
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_minor_units("amount", self.amount)


@dataclass(frozen=True)
class PaymentOutcome:
    """The result of one collection attempt. A decline is an outcome, not an exception."""

    invoice: StripeInvoice
    succeeded: bool
    decline_code: str | None = None
    failure_message: str | None = None
    # 3-D Secure (or another customer action) is needed; the customer must pay on-session.
    requires_action: bool = False


# --------------------------------------------------------------------------------------------
# Helpers shared by both gateways so they agree on keys and validation.
# --------------------------------------------------------------------------------------------


def parse_invoice_status(raw: str) -> InvoiceStatus:
    if raw == "draft":
        return "draft"
    if raw == "open":
        return "open"
    if raw == "paid":
        return "paid"
    if raw == "void":
        return "void"
    if raw == "uncollectible":
        return "uncollectible"
    raise ValueError(f"unknown invoice status {raw!r}")


def check_idempotency_key(key: str) -> None:
    """Refuse keys Stripe would refuse, so the fake fails where the real thing would."""
    if not key or not key.strip():
        raise StripeInvalidRequest("an idempotency key is required for every Stripe write")
    # Leave room for the suffixes the gateways derive (":item:N", ":finalize", ":default").
    if len(key) > MAX_IDEMPOTENCY_KEY_LENGTH - 32:
        raise StripeInvalidRequest(
            f"idempotency key longer than {MAX_IDEMPOTENCY_KEY_LENGTH - 32} characters: {key!r}"
        )


def invoice_item_key(invoice_key: str, n: int) -> str:
    """The key of the n-th invoice item created for the invoice written under `invoice_key`."""
    return f"{invoice_key}:item:{n}"


def finalize_key(invoice_key: str) -> str:
    return f"{invoice_key}:finalize"


def default_payment_method_key(attach_key: str) -> str:
    return f"{attach_key}:default"


def check_invoice_lines(lines: Sequence[InvoiceLine]) -> str:
    """Return the invoice currency; Stripe invoices a customer in exactly one currency."""
    if not lines:
        raise StripeInvalidRequest("an invoice needs at least one line")
    currencies = {line.currency for line in lines}
    if len(currencies) != 1:
        raise StripeInvalidRequest(f"invoice lines mix currencies: {sorted(currencies)}")
    return lines[0].currency


# --------------------------------------------------------------------------------------------
# The port.
# --------------------------------------------------------------------------------------------


class StripeGateway(Protocol):
    """Everything the engine asks of Stripe. Implementations translate vendor errors into the
    `StripeGatewayError` tree above and never raise vendor types."""

    async def ensure_customer(
        self, tenant_id: str, email: str | None, name: str, idempotency_key: str
    ) -> StripeCustomer:
        """Create the tenant's customer (metadata carries `tenant_id`); idempotent by key.

        Stripe forgets keys after 24 hours: the caller stores the returned id and only calls
        this while it has none."""
        ...

    async def attach_payment_method(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> CardDetails:
        """Attach a card and make it the customer's default for invoices.

        The returned `payment_method_id` is the one to store: Stripe test aliases such as
        `pm_card_visa` become a new concrete id when attached."""
        ...

    async def create_invoice(
        self,
        customer_id: str,
        lines: Sequence[InvoiceLine],
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeInvoice:
        """Create one invoice item per line (key `invoice_item_key(key, n)`), then a
        `charge_automatically` invoice with `auto_advance=False` that includes them, finalized
        so it has a number, a hosted page and a PDF. Stripe never collects it on its own."""
        ...

    async def pay_invoice(self, invoice_id: str, idempotency_key: str) -> PaymentOutcome:
        """Attempt to collect now with the customer's default card.

        A decline or a 3-D Secure requirement is returned as data. Paying an invoice that is
        already paid returns it as paid without charging again."""
        ...

    async def retrieve_invoice(self, invoice_id: str) -> StripeInvoice: ...

    async def void_invoice(self, invoice_id: str, idempotency_key: str) -> StripeInvoice:
        """Void an open or uncollectible invoice; an already void invoice is returned as is."""
        ...

    async def mark_uncollectible(self, invoice_id: str, idempotency_key: str) -> StripeInvoice:
        """Mark an open invoice uncollectible (it can still be paid later); an invoice that is
        already uncollectible is returned as is."""
        ...

    async def retrieve_payment_method(self, payment_method_id: str) -> CardDetails: ...

    async def find_invoice_for_payment(
        self, payment_intent_id: str | None, charge_id: str | None
    ) -> str | None:
        """The id of the invoice a payment (intent or charge) paid, or None: what a dispute,
        which names only the payment, is about."""
        ...

    async def refund_invoice_payment(
        self,
        invoice_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeRefund:
        """Refund `amount` of what the paid invoice collected, to the card it was charged on
        (`metadata` carries the credit note's id, so its `charge.refunded` is recognised as the
        engine's own). Idempotent by key; Stripe refuses more than was charged."""
        ...

    async def credit_open_invoice(
        self,
        invoice_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeCreditNote:
        """Issue a Stripe credit note of `amount` on an open (or uncollectible) invoice, which
        lowers its amount due; one that brings it to zero leaves the invoice paid. `metadata`
        carries the engine's credit note id, so a retry finds it. Idempotent by key; Stripe
        refuses a paid or void invoice, and more than is due."""
        ...

    async def detach_payment_method(self, payment_method_id: str, idempotency_key: str) -> None:
        """Detach a card from its customer; a card already detached, or unknown, is done."""
        ...

    async def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        """Delete the customer (its cards and personal data go with it in Stripe); an already
        deleted or unknown customer is done."""
        ...

    async def health_check(self) -> None:
        """Return if Stripe answers an authenticated read; raise a StripeGatewayError if not.
        For readiness probes: it costs one request against Stripe's rate limit per call."""
        ...
