"""The billing domain's error tree, and its registry.

Every error the domain raises is a `BillingError`. Each class carries a stable snake_case `code`
that the API puts in error bodies and activities use as the Temporal `ApplicationError` type, so
callers can branch on it without parsing messages, and a `retryable` flag. Every class that
names a code registers under it when it is defined; `billing/error_registry.py` reads the
registry: `decode` turns an `ApplicationError` type back into its class (the API decodes
workflow failures through it), and `non_retryable_codes` is the list every retry policy refuses
to retry (workflows/retry.py). The mapping to HTTP
statuses lives in `api/errors.py`.

Errors whose constructor takes structured fields define `__reduce__`, so they survive pickling
(process pools, test runners) with the same fields rather than failing to unpickle.
"""

from __future__ import annotations

from typing import ClassVar, Self

# Every error class by its code (read through billing/error_registry.py).
REGISTRY: dict[str, type[BillingError]] = {}


class BillingError(Exception):
    """Base of every domain error. `code` is stable: clients and retry policies depend on it."""

    code: ClassVar[str] = "billing_error"
    # Whether retrying the same call can succeed (a transient outage): retry policies retry
    # exactly the codes whose class says so.
    retryable: ClassVar[bool] = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if "code" in cls.__dict__:
            _register(cls)

    @classmethod
    def from_message(cls, message: str) -> Self:
        """The error as it arrives from the other side of Temporal: its class and message
        (structured fields stay behind)."""
        error = cls.__new__(cls)
        BillingError.__init__(error, message)
        return error


def _register(cls: type[BillingError]) -> None:
    known = REGISTRY.get(cls.code)
    if known is not None and known is not cls:
        raise TypeError(f"error code {cls.code!r} is taken by {known.__qualname__}")
    REGISTRY[cls.code] = cls


_register(BillingError)


class CatalogError(BillingError):
    """The plan catalog (or a plan snapshot) is malformed.

    `path` is the dotted path of the offending field, e.g.
    ``plans.standard.metrics.llm_tokens.included``; `source` names the file when there is one.
    """

    code: ClassVar[str] = "catalog_error"

    def __init__(self, path: str, problem: str, *, source: str | None = None) -> None:
        self.path = path
        self.problem = problem
        self.source = source
        where = ": ".join(part for part in (source, path) if part)
        super().__init__(f"{where}: {problem}" if where else problem)

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_catalog_error, (self.path, self.problem, self.source))


def _rebuild_catalog_error(path: str, problem: str, source: str | None) -> CatalogError:
    return CatalogError(path, problem, source=source)


class UnknownPlan(BillingError):
    """No plan with this code exists in the catalog."""

    code: ClassVar[str] = "unknown_plan"

    def __init__(self, plan_code: str) -> None:
        self.plan_code = plan_code
        super().__init__(f"unknown plan {plan_code!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.plan_code,))


class UnknownMetric(BillingError):
    """No metric with this code is declared (in the catalog, or on the plan asked)."""

    code: ClassVar[str] = "unknown_metric"

    def __init__(self, metric: str) -> None:
        self.metric = metric
        super().__init__(f"unknown metric {metric!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.metric,))


class CurrencyMismatch(BillingError):
    """Two amounts in different currencies were combined or compared."""

    code: ClassVar[str] = "currency_mismatch"

    def __init__(self, expected: str, actual: str) -> None:
        self.expected = expected
        self.actual = actual
        super().__init__(f"currency mismatch: expected {expected!r}, got {actual!r}")

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.expected, self.actual))


class InvalidTransition(BillingError):
    """A lifecycle change that the subscription's current state does not allow."""

    code: ClassVar[str] = "invalid_transition"


class PaymentDeclined(BillingError):
    """The payment processor refused the charge (card declined, authentication failed...)."""

    code: ClassVar[str] = "payment_declined"


class QuotaExceeded(BillingError):
    """Usage is blocked: a hard cap was reached, or a soft cap's grace window has run out."""

    code: ClassVar[str] = "quota_exceeded"


class TenantMismatch(BillingError):
    """A key the input names is held by another tenant's row (row-level security hid it from
    this tenant's transaction). Activities raise it as an ApplicationError of this type."""

    code: ClassVar[str] = "tenant_mismatch"
