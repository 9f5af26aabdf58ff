"""An in-memory `StripeGateway` for workflow and activity tests.

It keeps Stripe's idempotency semantics rather than switching them off, because the engine's
"charged exactly once" guarantee rests on them: a write replayed with the same key and the same
parameters returns the first result and has no second effect; the same key with different
parameters raises `StripeIdempotencyError` (Stripe's `idempotency_error`). Like Stripe, only
writes that ran are remembered: a transient failure or a refusal (not found, invalid state)
leaves the key free, so a retry with the same key does the work. A decline is a result, so
replaying `pay:{invoice}:{attempt}` returns the same decline without charging again.

Scripting: `decline_next`, `require_action_next`, `fail_next`, `start_outage`/`end_outage`,
`register_card`, `mark_paid_out_of_band`, plus Stripe's test aliases (`pm_card_visa`,
`pm_card_chargeCustomerFail`, `pm_card_authenticationRequired`, ...). Ids are deterministic
(`cus_fake_0001`, `in_fake_0001`, ...) so tests can name them.

Safe for concurrent asyncio use: writes on one key are serialised, so concurrent duplicates
wait and then replay the first result (real Stripe answers 409 to a duplicate that is still in
flight; the SDK adapter maps that to a transient error, the retry then replays, so the end state
is the same).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar, cast

from billing.payments import (
    CardDetails,
    InvoiceLine,
    InvoiceStatus,
    PaymentMethodUnavailable,
    PaymentOutcome,
    StripeCardRejected,
    StripeCreditNote,
    StripeCustomer,
    StripeGateway,
    StripeIdempotencyError,
    StripeInvalidRequest,
    StripeInvoice,
    StripeNotFound,
    StripePaymentMethodMissing,
    StripeRefund,
    StripeTransientError,
    check_idempotency_key,
    check_invoice_lines,
    default_payment_method_key,
    finalize_key,
    invoice_item_key,
    unusable_payment_method_message,
)

if TYPE_CHECKING:
    from adapters.stripe_pacing import RequestPacer

T = TypeVar("T")

CardBehaviour = Literal["succeeds", "declines", "requires_action", "rejected_on_attach"]

# Stripe's documented decline messages for the codes tests use most.
_DECLINE_MESSAGES = {
    "card_declined": "Your card was declined.",
    "insufficient_funds": "Your card has insufficient funds.",
    "expired_card": "Your card has expired.",
    "incorrect_cvc": "Your card's security code is incorrect.",
    "processing_error": "An error occurred while processing your card. Try again in a little bit.",
    "authentication_required": "Your card was declined. This transaction requires authentication.",
}

# The 3-D Secure outcome is reported with Stripe's decline code for it, so callers can treat it
# as "the customer must act" without a second field check.
AUTHENTICATION_REQUIRED = "authentication_required"

# Official Stripe test payment method aliases: brand, last4, behaviour, decline code.
_TEST_CARDS: dict[str, tuple[str, str, CardBehaviour, str | None]] = {
    "pm_card_visa": ("visa", "4242", "succeeds", None),
    "pm_card_mastercard": ("mastercard", "4444", "succeeds", None),
    "pm_card_amex": ("amex", "8431", "succeeds", None),
    "pm_card_chargeCustomerFail": ("visa", "0341", "declines", "card_declined"),
    "pm_card_visa_chargeDeclinedInsufficientFunds": (
        "visa",
        "9995",
        "declines",
        "insufficient_funds",
    ),
    "pm_card_authenticationRequired": ("visa", "3184", "requires_action", None),
    "pm_card_threeDSecure2Required": ("visa", "3220", "requires_action", None),
    "pm_card_visa_chargeDeclined": ("visa", "0002", "rejected_on_attach", "card_declined"),
}


class FakeCall(NamedTuple):
    """One call made to the gateway, recorded before any scripted failure is applied."""

    method: str
    idempotency_key: str | None
    params: Mapping[str, object]


class FakeCharge(NamedTuple):
    """Money actually taken: tests assert on these to prove "charged exactly once"."""

    invoice_id: str
    customer_id: str
    payment_method_id: str
    amount: int
    currency: str


@dataclass
class _PaymentMethod:
    card: CardDetails
    behaviour: CardBehaviour
    decline_code: str | None
    customer_id: str | None = None


@dataclass
class _Customer:
    id: str
    email: str | None
    name: str
    metadata: dict[str, str]
    default_payment_method: str | None = None


@dataclass
class _InvoiceItem:
    id: str
    customer_id: str
    line: InvoiceLine
    invoice_id: str | None = None


@dataclass
class _Invoice:
    id: str
    customer_id: str
    currency: str
    metadata: dict[str, str]
    item_ids: list[str]
    amount_due: int
    status: InvoiceStatus = "draft"
    amount_paid: int = 0
    attempt_count: int = 0


@dataclass(frozen=True)
class _Remembered:
    method: str
    params: object
    result: object


@dataclass
class _ScriptedPayment:
    requires_action: bool
    decline_code: str
    message: str


@dataclass
class _Faults:
    outage: bool = False
    fail_next: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _normalise(value: object) -> object:
    """A plain, order-insensitive-for-mappings form of call parameters, for comparing replays."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _normalise(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _normalise(v) for k, v in sorted(value.items())}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [_normalise(v) for v in value]
    return value


class FakeStripeGateway:
    """In-memory `StripeGateway` with real idempotency-key semantics and scriptable outcomes."""

    _METHODS = frozenset(
        {
            "detach_payment_method",
            "refund_invoice_payment",
            "credit_open_invoice",
            "find_invoice_for_payment",
            "delete_customer",
            "ensure_customer",
            "attach_payment_method",
            "create_invoice",
            "pay_invoice",
            "retrieve_invoice",
            "void_invoice",
            "mark_uncollectible",
            "retrieve_payment_method",
            "health_check",
        }
    )

    def __init__(
        self,
        *,
        latency_seconds: float = 0.0,
        latency: Callable[[], float] | None = None,
        pacer: RequestPacer | None = None,
    ) -> None:
        # Every call yields to the event loop (at least once), like a network round trip, so
        # concurrency tests interleave for real.
        self._latency_seconds = latency_seconds
        self.model_network(latency=latency, pacer=pacer)
        # Each request as Stripe would count it (one per keyed write, replays included, and one
        # per read): (instant it left, in the pacer's clock or monotonic ns; method).
        self.requests: list[tuple[int, str]] = []
        self.calls: list[FakeCall] = []
        self.charges: list[FakeCharge] = []
        self._ids: dict[str, itertools.count[int]] = defaultdict(lambda: itertools.count(1))
        self._customers: dict[str, _Customer] = {}
        self._payment_methods: dict[str, _PaymentMethod] = {}
        # Each customer's invoice items no invoice has swept in yet, in creation order.
        self._pending_items: dict[str, dict[str, _InvoiceItem]] = defaultdict(dict)
        self._invoices: dict[str, _Invoice] = {}
        # The payment intent of each successful charge -> the invoice it paid.
        self.payment_intents: dict[str, str] = {}
        # Every refund made, in order (the engine's and, in tests, "dashboard" ones).
        self.refunds: list[StripeRefund] = []
        # Every credit note that lowered an open invoice, in order.
        self.credit_notes: list[StripeCreditNote] = []
        self._remembered: dict[str, _Remembered] = {}
        self._key_locks: dict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._scripted: dict[str, list[_ScriptedPayment]] = defaultdict(list)
        self._faults = _Faults()

    # ---------------------------------------------------------------- scripting (sync, for tests)

    def model_network(
        self, *, latency: Callable[[], float] | None, pacer: RequestPacer | None
    ) -> None:
        """From now on, each request waits its turn under `pacer` (the engine's, ADR 0025)
        and then `latency()` seconds (drawn per request) instead of the fixed latency. The
        billing-day bench sets up its customers first, then models the network."""
        self._latency = latency
        self._pacer = pacer

    def decline_next(
        self,
        customer_id: str,
        code: str = "card_declined",
        *,
        message: str | None = None,
        times: int = 1,
    ) -> None:
        """The next `times` payment attempts for this customer decline with `code`."""
        text = message or _DECLINE_MESSAGES.get(code, "Your card was declined.")
        self._scripted[customer_id].extend(
            _ScriptedPayment(requires_action=False, decline_code=code, message=text)
            for _ in range(times)
        )

    def require_action_next(self, customer_id: str, *, times: int = 1) -> None:
        """The next `times` payment attempts for this customer need 3-D Secure."""
        self._scripted[customer_id].extend(
            _ScriptedPayment(
                requires_action=True,
                decline_code=AUTHENTICATION_REQUIRED,
                message=_DECLINE_MESSAGES[AUTHENTICATION_REQUIRED],
            )
            for _ in range(times)
        )

    def fail_next(self, method_name: str, *, times: int = 1) -> None:
        """The next `times` calls of `method_name` raise StripeTransientError before any effect."""
        if method_name not in self._METHODS:
            raise ValueError(f"unknown gateway method {method_name!r}")
        self._faults.fail_next[method_name] += times

    def start_outage(self) -> None:
        """Every call raises StripeTransientError until `end_outage()`."""
        self._faults.outage = True

    def end_outage(self) -> None:
        self._faults.outage = False

    @property
    def in_outage(self) -> bool:
        return self._faults.outage

    def register_card(
        self,
        *,
        brand: str = "visa",
        last4: str = "4242",
        exp_month: int = 12,
        exp_year: int = 2030,
        behaviour: CardBehaviour = "succeeds",
        decline_code: str | None = None,
    ) -> str:
        """A detached payment method, as Stripe.js creates one in the browser; returns its id."""
        if behaviour in ("declines", "rejected_on_attach") and decline_code is None:
            decline_code = "card_declined"
        pm_id = self._next_id("pm")
        self._payment_methods[pm_id] = _PaymentMethod(
            card=CardDetails(pm_id, brand, last4, exp_month, exp_year),
            behaviour=behaviour,
            decline_code=decline_code,
        )
        return pm_id

    def mark_paid_out_of_band(self, invoice_id: str) -> StripeInvoice:
        """The invoice was paid outside Stripe's charge flow (e.g. bank transfer)."""
        inv = self._invoice(invoice_id)
        if inv.status not in ("draft", "open", "uncollectible"):
            raise StripeInvalidRequest(f"invoice {invoice_id} is {inv.status}, cannot be paid")
        inv.status = "paid"
        inv.amount_paid = inv.amount_due
        return self._snapshot(inv)

    # ---------------------------------------------------------------- inspection (sync, for tests)

    def keys_for(self, method: str) -> list[str]:
        """Idempotency keys sent to `method`, in call order (replays included)."""
        return [c.idempotency_key for c in self.calls if c.method == method and c.idempotency_key]

    def invoice(self, invoice_id: str) -> StripeInvoice:
        return self._snapshot(self._invoice(invoice_id))

    def payment_method_customer(self, payment_method_id: str) -> str | None:
        """The customer a payment method is attached to (None: unattached or unknown)."""
        pm = self._payment_methods.get(payment_method_id)
        return pm.customer_id if pm else None

    @property
    def customers(self) -> list[StripeCustomer]:
        return [self._customer_snapshot(c) for c in self._customers.values()]

    @property
    def invoices(self) -> list[StripeInvoice]:
        return [self._snapshot(i) for i in self._invoices.values()]

    def charges_for(self, invoice_id: str) -> list[FakeCharge]:
        return [c for c in self.charges if c.invoice_id == invoice_id]

    # ---------------------------------------------------------------- the StripeGateway protocol

    async def ensure_customer(
        self, tenant_id: str, email: str | None, name: str, idempotency_key: str
    ) -> StripeCustomer:
        params = {"tenant_id": tenant_id, "email": email, "name": name}
        await self._enter("ensure_customer", idempotency_key, params)

        def create() -> StripeCustomer:
            customer = _Customer(
                id=self._next_id("cus"),
                email=email,
                name=name,
                metadata={"tenant_id": tenant_id},
            )
            self._customers[customer.id] = customer
            return self._customer_snapshot(customer)

        return await self._once("ensure_customer", idempotency_key, params, create)

    async def attach_payment_method(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> CardDetails:
        params = {"customer_id": customer_id, "payment_method_id": payment_method_id}
        await self._enter("attach_payment_method", idempotency_key, params)

        def attach() -> CardDetails:
            self._customer(customer_id)  # 404 before touching the payment method
            pm = self._resolve_payment_method(payment_method_id)
            if pm.behaviour == "rejected_on_attach":
                code = pm.decline_code or "card_declined"
                raise StripeCardRejected(_DECLINE_MESSAGES.get(code, code), stripe_code=code)
            if pm.customer_id not in (None, customer_id):
                # As Stripe: a payment method attached to one customer cannot be attached to
                # another (it must be detached first).
                raise PaymentMethodUnavailable(unusable_payment_method_message(payment_method_id))
            pm.customer_id = customer_id
            return pm.card

        card = await self._once("attach_payment_method", idempotency_key, params, attach)

        # A second write under its own derived key, as the SDK adapter does it.
        def set_default() -> str:
            self._customer(customer_id).default_payment_method = card.payment_method_id
            return card.payment_method_id

        await self._once(
            "set_default_payment_method",
            default_payment_method_key(idempotency_key),
            {"customer_id": customer_id, "payment_method_id": card.payment_method_id},
            set_default,
        )
        return card

    async def create_invoice(
        self,
        customer_id: str,
        lines: Sequence[InvoiceLine],
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeInvoice:
        params = {"customer_id": customer_id, "lines": lines, "metadata": metadata}
        await self._enter("create_invoice", idempotency_key, params)
        currency = check_invoice_lines(lines)

        for n, line in enumerate(lines):

            def create_item(line: InvoiceLine = line) -> str:
                self._customer(customer_id)
                item = _InvoiceItem(self._next_id("ii"), customer_id, line)
                self._pending_items[customer_id][item.id] = item
                return item.id

            await self._once(
                "create_invoice_item",
                invoice_item_key(idempotency_key, n),
                {"customer_id": customer_id, "line": line},
                create_item,
            )

        def create() -> StripeInvoice:
            # Like Stripe's pending_invoice_items_behavior="include": every pending item of
            # the customer is swept in, not only the ones created just above.
            pending = list(self._pending_items.get(customer_id, {}).values())
            if any(i.line.currency != currency for i in pending):
                raise StripeInvalidRequest("pending invoice items mix currencies")
            inv = _Invoice(
                id=self._next_id("in"),
                customer_id=customer_id,
                currency=currency,
                metadata=dict(metadata),
                item_ids=[i.id for i in pending],
                amount_due=max(0, sum(i.line.amount for i in pending)),
            )
            for item in pending:
                item.invoice_id = inv.id
            self._pending_items.pop(customer_id, None)
            self._invoices[inv.id] = inv
            return self._snapshot(inv)

        draft = await self._once("create_invoice", idempotency_key, params, create)

        def finalize() -> StripeInvoice:
            inv = self._invoice(draft.id)
            if inv.status == "draft":
                inv.status = "open"
            return self._snapshot(inv)

        return await self._once(
            "finalize_invoice", finalize_key(idempotency_key), {"invoice_id": draft.id}, finalize
        )

    async def pay_invoice(self, invoice_id: str, idempotency_key: str) -> PaymentOutcome:
        params = {"invoice_id": invoice_id}
        await self._enter("pay_invoice", idempotency_key, params)
        return await self._once(
            "pay_invoice", idempotency_key, params, lambda: self._pay(invoice_id)
        )

    async def retrieve_invoice(self, invoice_id: str) -> StripeInvoice:
        await self._enter("retrieve_invoice", None, {"invoice_id": invoice_id})
        await self._network()
        return self._snapshot(self._invoice(invoice_id))

    async def void_invoice(self, invoice_id: str, idempotency_key: str) -> StripeInvoice:
        params = {"invoice_id": invoice_id}
        await self._enter("void_invoice", idempotency_key, params)

        def void() -> StripeInvoice:
            inv = self._invoice(invoice_id)
            if inv.status in ("open", "uncollectible"):
                inv.status = "void"
            elif inv.status != "void":
                raise StripeInvalidRequest(f"invoice {invoice_id} is {inv.status}, cannot void")
            return self._snapshot(inv)

        return await self._once("void_invoice", idempotency_key, params, void)

    async def mark_uncollectible(self, invoice_id: str, idempotency_key: str) -> StripeInvoice:
        params = {"invoice_id": invoice_id}
        await self._enter("mark_uncollectible", idempotency_key, params)

        def mark() -> StripeInvoice:
            inv = self._invoice(invoice_id)
            if inv.status == "open":
                inv.status = "uncollectible"
            elif inv.status != "uncollectible":
                raise StripeInvalidRequest(
                    f"invoice {invoice_id} is {inv.status}, cannot mark uncollectible"
                )
            return self._snapshot(inv)

        return await self._once("mark_uncollectible", idempotency_key, params, mark)

    async def retrieve_payment_method(self, payment_method_id: str) -> CardDetails:
        params = {"payment_method_id": payment_method_id}
        await self._enter("retrieve_payment_method", None, params)
        await self._network()
        return self._resolve_payment_method(payment_method_id).card

    async def find_invoice_for_payment(
        self, payment_intent_id: str | None, charge_id: str | None
    ) -> str | None:
        params = {"payment_intent_id": payment_intent_id, "charge_id": charge_id}
        await self._enter("find_invoice_for_payment", None, params)
        await self._network()
        return self.payment_intents.get(payment_intent_id or "")

    def payment_intent_of(self, invoice_id: str) -> str:
        """The payment intent that paid the invoice (for tests that send its dispute)."""
        return next(pi for pi, inv in self.payment_intents.items() if inv == invoice_id)

    async def refund_invoice_payment(
        self,
        invoice_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeRefund:
        params = {"invoice_id": invoice_id, "amount": amount, "metadata": dict(metadata)}
        await self._enter("refund_invoice_payment", idempotency_key, params)

        def refund() -> StripeRefund:
            inv = self._invoice(invoice_id)
            if inv.status != "paid":
                raise StripeInvalidRequest(
                    f"invoice {invoice_id} is {inv.status}: nothing to refund"
                )
            refunded = sum(r.amount for r in self.refunds if r.metadata.get("invoice") == inv.id)
            if amount > inv.amount_paid - refunded:
                raise StripeInvalidRequest(
                    f"Refund amount ({amount}) is greater than unrefunded amount on charge "
                    f"({inv.amount_paid - refunded})"
                )
            made = StripeRefund(
                self._next_id("re"), amount, "succeeded", {**metadata, "invoice": inv.id}
            )
            self.refunds.append(made)
            return made

        return await self._once("refund_invoice_payment", idempotency_key, params, refund)

    async def credit_open_invoice(
        self,
        invoice_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeCreditNote:
        params = {"invoice_id": invoice_id, "amount": amount, "metadata": dict(metadata)}
        await self._enter("credit_open_invoice", idempotency_key, params)

        def credit() -> StripeCreditNote:
            inv = self._invoice(invoice_id)
            if inv.status not in ("open", "uncollectible"):
                raise StripeInvalidRequest(
                    f"invoice {invoice_id} is {inv.status}: only an open invoice's amount due "
                    "can be credited"
                )
            if amount > inv.amount_due:
                raise StripeInvalidRequest(
                    f"The credit note amount ({amount}) is greater than the amount due on the "
                    f"invoice ({inv.amount_due})"
                )
            inv.amount_due -= amount
            if inv.amount_due == 0:
                inv.status = "paid"  # Stripe settles an invoice credited in full
            made = StripeCreditNote(
                self._next_id("cn"), amount, self._snapshot(inv), dict(metadata)
            )
            self.credit_notes.append(made)
            return made

        return await self._once("credit_open_invoice", idempotency_key, params, credit)

    async def detach_payment_method(self, payment_method_id: str, idempotency_key: str) -> None:
        params = {"payment_method_id": payment_method_id}
        await self._enter("detach_payment_method", idempotency_key, params)
        await self._network()
        pm = self._payment_methods.get(payment_method_id)
        if pm is not None:
            pm.customer_id = None

    async def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        await self._enter("delete_customer", idempotency_key, {"customer_id": customer_id})
        await self._network()
        self._customers.pop(customer_id, None)
        for pm in self._payment_methods.values():
            if pm.customer_id == customer_id:
                pm.customer_id = None

    async def health_check(self) -> None:
        # Fails in an outage or when scripted with fail_next("health_check"), like the rest.
        await self._enter("health_check", None, {})

    # ---------------------------------------------------------------- internals

    async def _enter(self, method: str, key: str | None, params: Mapping[str, object]) -> None:
        """Record the call, validate the key, then apply scripted faults before any effect."""
        self.calls.append(FakeCall(method, key, cast(Mapping[str, object], _normalise(params))))
        if key is not None:
            check_idempotency_key(key)
            await self._network()  # the keyed requests themselves are made in `_once`
        else:
            await self._request(method)  # a read is one request
        if self._faults.outage:
            raise StripeTransientError("Stripe is unavailable (scripted outage)", http_status=503)
        if self._faults.fail_next[method] > 0:
            self._faults.fail_next[method] -= 1
            raise StripeTransientError(f"scripted transient failure of {method}", http_status=500)

    async def _network(self) -> None:
        await asyncio.sleep(self._latency_seconds)

    async def _request(self, method: str) -> None:
        """One request on the wire: its turn under the pacer, then its round trip."""
        if self._pacer is not None:
            sent = await self._pacer.acquire()
        else:
            sent = time.monotonic_ns()
        self.requests.append((sent, method))
        await asyncio.sleep(self._latency() if self._latency else self._latency_seconds)

    async def _once(
        self, method: str, key: str, params: Mapping[str, object], effect: Callable[[], T]
    ) -> T:
        """Run `effect` at most once per key, Stripe-style."""
        normalised = _normalise(params)
        async with self._key_locks[key]:
            remembered = self._remembered.get(key)
            if remembered is None:
                # The round trip happens inside the lock: duplicates in flight wait for it.
                await self._request(method)
                result = effect()
                self._remembered[key] = _Remembered(method, normalised, result)
                return result
        await self._request(method)  # a replayed request still reaches Stripe
        if remembered.method != method or remembered.params != normalised:
            raise StripeIdempotencyError(
                f"Keys for idempotent requests can only be used with the same parameters they "
                f"were first used with; {key!r} was first used for {remembered.method} with "
                f"{remembered.params!r}",
                stripe_code="idempotency_key_reused",
                http_status=400,
            )
        return cast(T, remembered.result)

    def _pay(self, invoice_id: str) -> PaymentOutcome:
        inv = self._invoice(invoice_id)
        if inv.status == "paid":
            return PaymentOutcome(self._snapshot(inv), succeeded=True)
        if inv.status == "void":
            raise StripeInvalidRequest(f"invoice {invoice_id} is void, cannot pay")
        if inv.status == "draft":
            inv.status = "open"
        if inv.amount_due == 0:
            inv.status = "paid"
            return PaymentOutcome(self._snapshot(inv), succeeded=True)

        customer = self._customer(inv.customer_id)
        if customer.default_payment_method is None:
            raise StripePaymentMethodMissing(
                f"customer {customer.id} has no default payment method", http_status=400
            )
        pm = self._payment_methods[customer.default_payment_method]
        inv.attempt_count += 1

        scripted = self._scripted[customer.id]
        if scripted:
            step = scripted.pop(0)
            return PaymentOutcome(
                self._snapshot(inv),
                succeeded=False,
                decline_code=step.decline_code,
                failure_message=step.message,
                requires_action=step.requires_action,
            )
        if pm.behaviour == "requires_action":
            return PaymentOutcome(
                self._snapshot(inv),
                succeeded=False,
                decline_code=AUTHENTICATION_REQUIRED,
                failure_message=_DECLINE_MESSAGES[AUTHENTICATION_REQUIRED],
                requires_action=True,
            )
        if pm.behaviour == "declines":
            code = pm.decline_code or "card_declined"
            return PaymentOutcome(
                self._snapshot(inv),
                succeeded=False,
                decline_code=code,
                failure_message=_DECLINE_MESSAGES.get(code, "Your card was declined."),
            )

        self.charges.append(
            FakeCharge(inv.id, customer.id, pm.card.payment_method_id, inv.amount_due, inv.currency)
        )
        self.payment_intents[self._next_id("pi")] = inv.id
        inv.status = "paid"
        inv.amount_paid = inv.amount_due
        return PaymentOutcome(self._snapshot(inv), succeeded=True)

    def _resolve_payment_method(self, payment_method_id: str) -> _PaymentMethod:
        alias = _TEST_CARDS.get(payment_method_id)
        if alias is not None:
            # Stripe turns a test alias into a new concrete payment method on every use.
            brand, last4, behaviour, decline_code = alias
            pm_id = self.register_card(
                brand=brand, last4=last4, behaviour=behaviour, decline_code=decline_code
            )
            return self._payment_methods[pm_id]
        pm = self._payment_methods.get(payment_method_id)
        if pm is None:
            raise StripeNotFound(f"No such PaymentMethod: '{payment_method_id}'", http_status=404)
        return pm

    def _customer(self, customer_id: str) -> _Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise StripeNotFound(f"No such customer: '{customer_id}'", http_status=404)
        return customer

    def _invoice(self, invoice_id: str) -> _Invoice:
        inv = self._invoices.get(invoice_id)
        if inv is None:
            raise StripeNotFound(f"No such invoice: '{invoice_id}'", http_status=404)
        return inv

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}_fake_{next(self._ids[prefix]):04d}"

    @staticmethod
    def _customer_snapshot(customer: _Customer) -> StripeCustomer:
        return StripeCustomer(customer.id, customer.email, dict(customer.metadata))

    @staticmethod
    def _snapshot(inv: _Invoice) -> StripeInvoice:
        # Stripe only publishes the hosted page and PDF once an invoice is finalized.
        published = inv.status != "draft"
        return StripeInvoice(
            id=inv.id,
            status=inv.status,
            amount_due=inv.amount_due,
            amount_paid=inv.amount_paid,
            currency=inv.currency,
            hosted_invoice_url=f"https://stripe-fake.invalid/i/{inv.id}" if published else None,
            invoice_pdf=f"https://stripe-fake.invalid/i/{inv.id}/pdf" if published else None,
            customer_id=inv.customer_id,
            metadata=dict(inv.metadata),
        )


if TYPE_CHECKING:

    def _implements_the_port(gateway: FakeStripeGateway) -> StripeGateway:
        return gateway  # mypy fails here if the fake drifts from the protocol
