"""`StripeGateway` over the official stripe-python SDK (`StripeClient`, async methods).

Design points, each for a reason:

- One `StripeClient` per gateway, built in the constructor: no `stripe.api_key` globals, so two
  gateways (live and test, or two tests) never share credentials.
- `max_network_retries=0`: Temporal owns retries. The SDK would otherwise retry on its own, and
  the activity's retry policy would multiply them.
- The API version is pinned in `STRIPE_API_VERSION`, the version stripe-python 16.1's types were
  generated for; a test fails when an SDK upgrade moves it, so the bump is deliberate.
- Every write sends the caller's deterministic idempotency key (or one derived from it, e.g.
  `invoice:{id}:item:{n}`); the SDK would otherwise invent a random key per attempt, which makes
  a retried charge a second charge.
- Vendor errors are translated once, here (`_translate`); a card decline during `pay_invoice`
  is returned as a `PaymentOutcome`, never raised.

localstripe (the contract-test server) differs from Stripe in a few places; this adapter is
written against real Stripe and tolerates the differences that are observable in responses
(a declined `pay` answering 200 with an `open` invoice). The request-side gaps (standalone
invoices, `finalize`, `mark_uncollectible`, extra invoice parameters) are filled by the
localstripe runner in `devstack/localstripe_main.py`, so the adapter sends real Stripe requests
to both.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final, ParamSpec, TypeVar

import stripe

from adapters.stripe_pacing import RequestPacer
from billing.payments import (
    CardDetails,
    InvoiceLine,
    PaymentMethodUnavailable,
    PaymentOutcome,
    StripeAuthenticationError,
    StripeCardRejected,
    StripeCreditNote,
    StripeCustomer,
    StripeGateway,
    StripeGatewayError,
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
    parse_invoice_status,
    unusable_payment_method_message,
)
from config import Settings

# The API version stripe-python 16.1.x is generated for (stripe._api_version._ApiVersion).
STRIPE_API_VERSION: Final = "2026-10-28.endive"

# Long enough for Stripe's slowest endpoints, short enough that an activity's start-to-close
# timeout (set above this) sees a hung connection as a retryable failure.
DEFAULT_TIMEOUT_SECONDS: Final = 30.0

AUTHENTICATION_REQUIRED: Final = "authentication_required"
# How Stripe says "the customer must authenticate (3-D Secure) before this can be paid".
_REQUIRES_ACTION_CODES: Final = frozenset(
    {"invoice_payment_intent_requires_action", AUTHENTICATION_REQUIRED}
)

P = ParamSpec("P")
R = TypeVar("R")


def _translate(exc: stripe.StripeError) -> StripeGatewayError:
    """Map a vendor error to the billing error tree: the only place that knows both."""
    message = exc.user_message or type(exc).__name__
    fields: dict[str, Any] = {
        "stripe_code": exc.code,
        "http_status": exc.http_status,
        "request_id": exc.request_id,
    }
    if isinstance(exc, stripe.CardError):
        # Outside pay_invoice a card error means the card itself was refused (on attach).
        body = _error_body(exc)
        fields["stripe_code"] = body.get("decline_code") or exc.code
        return StripeCardRejected(message, **fields)
    if isinstance(exc, stripe.RateLimitError | stripe.APIConnectionError):
        return StripeTransientError(message, **fields)
    if isinstance(exc, stripe.IdempotencyError):
        return StripeIdempotencyError(message, **fields)
    if isinstance(exc, stripe.InvalidRequestError):
        if exc.http_status == 404:
            return StripeNotFound(message, **fields)
        return StripeInvalidRequest(message, **fields)
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return StripeAuthenticationError(message, **fields)
    if isinstance(exc, stripe.APIError):
        # 5xx, an unparseable body, or 409 (a request with the same key still in flight).
        status = exc.http_status
        if status is None or status >= 500 or status == 409:
            return StripeTransientError(message, **fields)
        return StripeInvalidRequest(message, **fields)
    return StripeGatewayError(message, **fields)


def _translating(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Decorator: vendor errors never leave a gateway method (Zulip's `catch_stripe_errors`)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except stripe.StripeError as exc:
            raise _translate(exc) from exc

    return wrapper


def _error_body(exc: stripe.StripeError) -> dict[str, Any]:
    body = exc.json_body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error: dict[str, Any] = body["error"]
        return error
    return {}


def _id_of(value: object) -> str:
    """An id field that may come back expanded."""
    if isinstance(value, Mapping):
        return str(value["id"])
    return str(value)


def _metadata(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _optional_str(value: object) -> str | None:
    return None if value is None else str(value)


def _to_invoice(obj: stripe.Invoice) -> StripeInvoice:
    # StripeObject.get() raises in stripe 16: read a plain dict instead.
    d = obj.to_dict()
    return StripeInvoice(
        id=str(d["id"]),
        status=parse_invoice_status(str(d["status"])),
        amount_due=int(d["amount_due"]),
        amount_paid=int(d.get("amount_paid") or 0),
        currency=str(d["currency"]).lower(),
        hosted_invoice_url=_optional_str(d.get("hosted_invoice_url")),
        invoice_pdf=_optional_str(d.get("invoice_pdf")),
        customer_id=_id_of(d["customer"]),
        metadata=_metadata(d.get("metadata")),
    )


def _to_card(obj: stripe.PaymentMethod) -> CardDetails:
    d = obj.to_dict()
    card = d.get("card")
    if d.get("type") != "card" or not isinstance(card, Mapping):
        raise StripeInvalidRequest(f"payment method {d.get('id')} is not a card")
    return CardDetails(
        payment_method_id=str(d["id"]),
        brand=str(card["brand"]),
        last4=str(card["last4"]),
        exp_month=int(card["exp_month"]),
        exp_year=int(card["exp_year"]),
    )


# Stripe's test payment methods (`pm_card_visa`, ...): each use makes a new, unattached card.
TEST_ALIAS_PREFIX = "pm_card_"


def _customer_of(obj: stripe.PaymentMethod) -> str | None:
    customer = obj.to_dict().get("customer")
    if isinstance(customer, Mapping):
        customer = customer.get("id")
    return str(customer) if customer else None


def _expandable_id(value: Any) -> str | None:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


def _keyed(idempotency_key: str) -> stripe.RequestOptions:
    return {"idempotency_key": idempotency_key}


class PacedHTTPXClient(stripe.HTTPXClient):
    """The SDK's async HTTP client, every request paced (ADR 0025): Stripe's rate limit counts
    requests, and one gateway call can make several."""

    def __init__(self, pacer: RequestPacer, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self._pacer = pacer

    async def request_async(
        self, method: str, url: str, headers: Mapping[str, str], post_data: Any = None
    ) -> tuple[bytes, int, Mapping[str, str]]:
        await self._pacer.acquire()
        result: tuple[bytes, int, Mapping[str, str]] = await super().request_async(
            method, url, headers, post_data
        )
        return result


class StripeSdkGateway:
    """`StripeGateway` over `stripe.StripeClient`. Close it with `aclose()`."""

    def __init__(
        self,
        api_key: str,
        api_base: str | None = None,
        api_version: str = STRIPE_API_VERSION,
        *,
        http_client: stripe.HTTPClient | None = None,
        timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS,
        pacer: RequestPacer | None = None,
    ) -> None:
        if not api_key:
            raise StripeAuthenticationError("a Stripe API key is required")
        # An explicit async HTTP client: the gateway only uses the *_async methods, and tests
        # pass a recording subclass to check what goes over the wire.
        if http_client is None:
            http_client = (
                PacedHTTPXClient(pacer, timeout=timeout_seconds)
                if pacer is not None
                else stripe.HTTPXClient(timeout=timeout_seconds)
            )
        self._http_client = http_client
        self._client = stripe.StripeClient(
            api_key,
            stripe_version=api_version,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            max_network_retries=0,
            http_client=self._http_client,
        )

    async def aclose(self) -> None:
        # stripe.HTTPClient.close_async carries no annotations; name the type it has.
        close: Callable[[], Awaitable[None]] = self._http_client.close_async
        await close()

    async def __aenter__(self) -> StripeSdkGateway:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @_translating
    async def ensure_customer(
        self, tenant_id: str, email: str | None, name: str, idempotency_key: str
    ) -> StripeCustomer:
        check_idempotency_key(idempotency_key)
        params: stripe.params.CustomerCreateParams = {
            "name": name,
            "metadata": {"tenant_id": tenant_id},
        }
        if email is not None:
            params["email"] = email
        customer = await self._client.v1.customers.create_async(
            params=params, options=_keyed(idempotency_key)
        )
        d = customer.to_dict()
        return StripeCustomer(
            id=str(d["id"]), email=_optional_str(d.get("email")), metadata=_metadata(d["metadata"])
        )

    @_translating
    async def attach_payment_method(
        self, customer_id: str, payment_method_id: str, idempotency_key: str
    ) -> CardDetails:
        check_idempotency_key(idempotency_key)
        if not payment_method_id.startswith(TEST_ALIAS_PREFIX):
            # Stripe refuses to attach a card another customer holds; localstripe does not.
            # Checked here too, so no backend ever moves another tenant's card to this one.
            current = await self._client.v1.payment_methods.retrieve_async(payment_method_id)
            if _customer_of(current) not in (None, customer_id):
                raise PaymentMethodUnavailable(unusable_payment_method_message(payment_method_id))
        attached = await self._client.v1.payment_methods.attach_async(
            payment_method_id,
            params={"customer": customer_id},
            options=_keyed(idempotency_key),
        )
        if _customer_of(attached) != customer_id:
            raise PaymentMethodUnavailable(unusable_payment_method_message(payment_method_id))
        card = _to_card(attached)
        # The id Stripe returns, not the one given: a test alias becomes a new concrete id.
        await self._client.v1.customers.update_async(
            customer_id,
            params={"invoice_settings": {"default_payment_method": card.payment_method_id}},
            options=_keyed(default_payment_method_key(idempotency_key)),
        )
        return card

    @_translating
    async def create_invoice(
        self,
        customer_id: str,
        lines: Sequence[InvoiceLine],
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeInvoice:
        check_idempotency_key(idempotency_key)
        currency = check_invoice_lines(lines)
        for n, line in enumerate(lines):
            await self._client.v1.invoice_items.create_async(
                params={
                    "customer": customer_id,
                    "amount": line.amount,
                    "currency": line.currency,
                    "description": line.description,
                    "metadata": dict(line.metadata),
                },
                options=_keyed(invoice_item_key(idempotency_key, n)),
            )
        invoice = await self._client.v1.invoices.create_async(
            params={
                "customer": customer_id,
                # Stripe only sweeps pending items in the invoice's currency, so name it.
                "currency": currency,
                "collection_method": "charge_automatically",
                # The engine, not Stripe, decides when to collect (its dunning schedule).
                "auto_advance": False,
                # The default became "exclude" in 2022; the items above must be included.
                "pending_invoice_items_behavior": "include",
                "metadata": dict(metadata),
            },
            options=_keyed(idempotency_key),
        )
        if invoice["status"] == "draft":
            # Finalizing gives the invoice its number, hosted page and PDF now; with
            # auto_advance off Stripe still makes no payment attempt of its own.
            invoice = await self._client.v1.invoices.finalize_invoice_async(
                str(invoice["id"]),
                params={"auto_advance": False},
                options=_keyed(finalize_key(idempotency_key)),
            )
        return _to_invoice(invoice)

    @_translating
    async def pay_invoice(self, invoice_id: str, idempotency_key: str) -> PaymentOutcome:
        check_idempotency_key(idempotency_key)
        try:
            invoice = await self._client.v1.invoices.pay_async(
                invoice_id, options=_keyed(idempotency_key)
            )
        except stripe.CardError as exc:
            # Real Stripe: a decline (or a 3-D Secure requirement) is a 402 card error.
            return await self._declined(invoice_id, exc)
        except stripe.InvalidRequestError:
            current = await self._retrieve(invoice_id)
            if current.status == "paid":
                # "Invoice is already paid": the earlier attempt succeeded; never charge twice.
                return PaymentOutcome(current, succeeded=True)
            if await self._lacks_default_payment_method(current.customer_id):
                raise StripePaymentMethodMissing(
                    f"customer {current.customer_id} has no default payment method"
                ) from None
            raise
        if invoice["status"] == "paid":
            return PaymentOutcome(_to_invoice(invoice), succeeded=True)
        return await self._outcome_of_unpaid(invoice)

    @_translating
    async def retrieve_invoice(self, invoice_id: str) -> StripeInvoice:
        return await self._retrieve(invoice_id)

    @_translating
    async def void_invoice(self, invoice_id: str, idempotency_key: str) -> StripeInvoice:
        check_idempotency_key(idempotency_key)
        try:
            invoice = await self._client.v1.invoices.void_invoice_async(
                invoice_id, options=_keyed(idempotency_key)
            )
        except stripe.InvalidRequestError:
            # Stripe refuses to void twice; the engine asks for a state, so that is success.
            current = await self._retrieve(invoice_id)
            if current.status == "void":
                return current
            raise
        return _to_invoice(invoice)

    @_translating
    async def mark_uncollectible(self, invoice_id: str, idempotency_key: str) -> StripeInvoice:
        check_idempotency_key(idempotency_key)
        try:
            invoice = await self._client.v1.invoices.mark_uncollectible_async(
                invoice_id, options=_keyed(idempotency_key)
            )
        except stripe.InvalidRequestError:
            current = await self._retrieve(invoice_id)
            if current.status == "uncollectible":
                return current
            raise
        return _to_invoice(invoice)

    @_translating
    async def retrieve_payment_method(self, payment_method_id: str) -> CardDetails:
        pm = await self._client.v1.payment_methods.retrieve_async(payment_method_id)
        return _to_card(pm)

    @_translating
    async def detach_payment_method(self, payment_method_id: str, idempotency_key: str) -> None:
        check_idempotency_key(idempotency_key)
        try:
            await self._client.v1.payment_methods.detach_async(
                payment_method_id, options=_keyed(idempotency_key)
            )
        except (stripe.InvalidRequestError, stripe.APIError) as exc:
            # Already detached (Stripe answers 400) or gone (404): the goal holds.
            if _http_status(exc) not in (400, 404):
                raise

    @_translating
    async def delete_customer(self, customer_id: str, idempotency_key: str) -> None:
        check_idempotency_key(idempotency_key)
        try:
            await self._client.v1.customers.delete_async(
                customer_id, options=_keyed(idempotency_key)
            )
        except stripe.InvalidRequestError as exc:
            if _http_status(exc) != 404:  # already deleted
                raise

    @_translating
    async def find_invoice_for_payment(
        self, payment_intent_id: str | None, charge_id: str | None
    ) -> str | None:
        if payment_intent_id is None and charge_id is not None:
            charge = (await self._client.v1.charges.retrieve_async(charge_id)).to_dict()
            found = _expandable_id(charge.get("invoice"))
            if found is not None:
                return found
            payment_intent_id = _expandable_id(charge.get("payment_intent"))
        if payment_intent_id is None:
            return None
        try:
            intent = await self._client.v1.payment_intents.retrieve_async(payment_intent_id)
        except stripe.InvalidRequestError as exc:
            if _http_status(exc) == 404:  # a payment Stripe does not know paid nothing of ours
                return None
            raise
        return _expandable_id(intent.to_dict().get("invoice"))

    @_translating
    async def refund_invoice_payment(
        self,
        invoice_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeRefund:
        check_idempotency_key(idempotency_key)
        invoice = (await self._client.v1.invoices.retrieve_async(invoice_id)).to_dict()
        # The payment to refund: the invoice's payment intent, or its charge (older API
        # versions); either may come expanded.
        target = _expandable_id(invoice.get("payment_intent"))
        params: dict[str, Any] = {"amount": amount, "metadata": dict(metadata)}
        if target is not None:
            params["payment_intent"] = target
        elif (charge := _expandable_id(invoice.get("charge"))) is not None:
            params["charge"] = charge
        else:
            raise StripeInvalidRequest(f"invoice {invoice_id} has no payment to refund")
        # The credit note's refund made before (a retry after Stripe forgot the key, which it
        # does after 24 hours, or a server that ignores keys): found by its metadata.
        wanted = metadata.get("credit_note_id")
        lookup = {k: v for k, v in params.items() if k in ("payment_intent", "charge")}
        earlier = await self._client.v1.refunds.list_async(
            params={**lookup, "limit": 100}  # type: ignore[arg-type]
        )
        refund = (
            next(
                (
                    r.to_dict()
                    for r in earlier.data
                    if wanted
                    and (r.to_dict().get("metadata") or {}).get("credit_note_id") == wanted
                ),
                None,
            )
            or (
                await self._client.v1.refunds.create_async(
                    params=params,  # type: ignore[arg-type]
                    options=_keyed(idempotency_key),
                )
            ).to_dict()
        )
        return StripeRefund(
            str(refund["id"]),
            int(refund["amount"]),
            str(refund.get("status") or "succeeded"),
            {str(k): str(v) for k, v in (refund.get("metadata") or {}).items()},
        )

    @_translating
    async def credit_open_invoice(
        self,
        invoice_id: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeCreditNote:
        check_idempotency_key(idempotency_key)
        # The credit note made before for the engine's (a retry after Stripe forgot the key, or
        # a server that ignores keys): found by its metadata, as refunds are.
        wanted = metadata.get("credit_note_id")
        earlier = await self._client.v1.credit_notes.list_async(
            params={"invoice": invoice_id, "limit": 100}
        )
        note = (
            next(
                (
                    n.to_dict()
                    for n in earlier.data
                    if wanted
                    and (n.to_dict().get("metadata") or {}).get("credit_note_id") == wanted
                ),
                None,
            )
            or (
                await self._client.v1.credit_notes.create_async(
                    params={"invoice": invoice_id, "amount": amount, "metadata": dict(metadata)},
                    options=_keyed(idempotency_key),
                )
            ).to_dict()
        )
        return StripeCreditNote(
            str(note["id"]),
            int(note["amount"]),
            await self._retrieve(invoice_id),
            {str(k): str(v) for k, v in (note.get("metadata") or {}).items()},
        )

    @_translating
    async def health_check(self) -> None:
        # The cheapest authenticated read; it proves the key as well as the network.
        await self._client.v1.balance.retrieve_async()

    # ------------------------------------------------------------------------------ internals

    async def _retrieve(self, invoice_id: str) -> StripeInvoice:
        return _to_invoice(await self._client.v1.invoices.retrieve_async(invoice_id))

    async def _lacks_default_payment_method(self, customer_id: str) -> bool:
        d = (await self._client.v1.customers.retrieve_async(customer_id)).to_dict()
        settings = d.get("invoice_settings") or {}
        return not settings.get("default_payment_method") and not d.get("default_source")

    async def _declined(self, invoice_id: str, exc: stripe.CardError) -> PaymentOutcome:
        body = _error_body(exc)
        decline_code = body.get("decline_code") or exc.code or "card_declined"
        requires_action = exc.code in _REQUIRES_ACTION_CODES or decline_code in (
            _REQUIRES_ACTION_CODES
        )
        if requires_action:
            decline_code = AUTHENTICATION_REQUIRED
        return PaymentOutcome(
            invoice=await self._retrieve(invoice_id),
            succeeded=False,
            decline_code=str(decline_code),
            failure_message=exc.user_message,
            requires_action=requires_action,
        )

    async def _outcome_of_unpaid(self, invoice: stripe.Invoice) -> PaymentOutcome:
        """A pay call that answered 200 without paying: localstripe's way to decline.

        The invoice's payment intent (exposed by localstripe; real Stripe raises a card error
        instead) says whether it was a decline or a 3-D Secure requirement, and why."""
        d = invoice.to_dict()
        outcome = _to_invoice(invoice)
        intent_id = d.get("payment_intent")
        if not isinstance(intent_id, str):
            return PaymentOutcome(outcome, succeeded=False, decline_code="card_declined")
        intent = (await self._client.v1.payment_intents.retrieve_async(intent_id)).to_dict()
        if intent.get("status") == "requires_action":
            return PaymentOutcome(
                outcome,
                succeeded=False,
                decline_code=AUTHENTICATION_REQUIRED,
                failure_message="This payment requires authentication (3-D Secure).",
                requires_action=True,
            )
        error = intent.get("last_payment_error") or {}
        return PaymentOutcome(
            outcome,
            succeeded=False,
            decline_code=str(error.get("decline_code") or error.get("code") or "card_declined"),
            failure_message=_optional_str(error.get("message")),
        )


if TYPE_CHECKING:

    def _implements_the_port(gateway: StripeSdkGateway) -> StripeGateway:
        return gateway  # mypy fails here if the adapter drifts from the protocol


def build_gateway(settings: Settings) -> StripeGateway:
    """The Stripe adapter the settings name (localstripe under `billing dev`, Stripe otherwise)."""
    if settings.stripe_api_key is None:
        raise SystemExit("BILLING_STRIPE_API_KEY is not set (run through `billing dev`)")
    return StripeSdkGateway(
        api_key=settings.stripe_api_key.get_secret_value(),
        api_base=settings.stripe_api_base,
        pacer=RequestPacer(settings.stripe_requests_per_second),
    )


def _http_status(exc: stripe.StripeError) -> int | None:
    status: int | None = exc.http_status
    return status
