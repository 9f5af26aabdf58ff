"""One place that maps errors to HTTP statuses. A business conflict is a 4xx, never a 500; an
unreachable database is a 503 with `Retry-After`, on every route; every error body is an
`ErrorResponse`."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.service import RPCError, RPCStatusCode

from adapters.db import errors as db_errors
from billing import coupons, credit_notes, payments
from billing import errors as domain
from services.errors import (
    Conflict,
    FieldInvalid,
    Forbidden,
    NotFound,
    RateLimited,
    ServiceError,
    ServiceUnavailable,
    SubscriptionPaused,
    Unauthorized,
)

log = logging.getLogger("billing.api")


# The failure kinds of the use cases carry their statuses (services/errors.py); the API raises
# them too, and answers each with its status here.
__all__ = [
    "Conflict",
    "FieldInvalid",
    "Forbidden",
    "NotFound",
    "ServiceError",
    "ServiceUnavailable",
    "SubscriptionPaused",
    "Unauthorized",
    "error_body",
    "error_responses",
    "install_error_handlers",
    "status_for",
]


def database_unavailable_response() -> JSONResponse:
    return JSONResponse(
        error_body(
            "service_unavailable",
            "the database is unreachable; nothing was changed unless the answer said so, "
            "retry later",
        ),
        status_code=503,
        headers={"Retry-After": str(db_errors.RETRY_AFTER_SECONDS)},
    )


DOMAIN_STATUS: dict[type[domain.BillingError], int] = {
    domain.UnknownPlan: 422,
    domain.UnknownMetric: 422,
    domain.CatalogError: 422,
    domain.CurrencyMismatch: 422,
    domain.InvalidTransition: 409,
    credit_notes.CreditRefused: 409,
    coupons.CouponRefused: 409,
    domain.PaymentDeclined: 402,
    domain.QuotaExceeded: 402,
    # Stripe, when the API calls it directly (a card added before any subscription).
    payments.StripeTransientError: 503,
    payments.StripeAuthenticationError: 503,
    payments.StripeInvalidRequest: 422,
}


def status_for(error: domain.BillingError) -> int:
    for cls in type(error).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 400


HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def error_body(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, **extra}}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route, so OpenAPI documents its error statuses. A route that takes an
    API key (401) can also answer 429: tenant keys are rate-limited (ADR 0012)."""
    found = set(statuses) | ({429} if 401 in statuses else set())
    return {s: {"description": "error", "model": ErrorResponse} for s in sorted(found)}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(FieldInvalid)
    async def _field_invalid(_: Request, exc: FieldInvalid) -> JSONResponse:
        fields = [{"field": exc.field, "location": exc.location, "message": exc.field_message}]
        return JSONResponse(
            error_body(exc.code, exc.message, fields=fields), status_code=exc.status_code
        )

    @app.exception_handler(ServiceError)
    async def _api_error(_: Request, exc: ServiceError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        if exc.status_code == 503:
            headers = {"Retry-After": str(db_errors.RETRY_AFTER_SECONDS)}
        if isinstance(exc, RateLimited):
            headers = exc.headers()
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=exc.status_code, headers=headers
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI's and Starlette's own errors (a body that cannot be read, an unknown path, a
        # wrong method) in the same schema as every other error.
        code = HTTP_CODES.get(exc.status_code, "bad_request" if exc.status_code < 500 else "error")
        return JSONResponse(
            error_body(code, str(exc.detail)),
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        fields = [
            {
                "field": ".".join(str(p) for p in err["loc"] if p not in ("body", "query", "path")),
                "location": str(err["loc"][0]) if err["loc"] else "body",
                "message": err["msg"],
            }
            for err in exc.errors()
        ]
        summary = "; ".join(f"{f['field'] or f['location']}: {f['message']}" for f in fields)
        return JSONResponse(error_body("validation_error", summary, fields=fields), status_code=422)

    @app.exception_handler(domain.BillingError)
    async def _domain_error(_: Request, exc: domain.BillingError) -> JSONResponse:
        status = status_for(exc)
        headers = {"Retry-After": str(db_errors.RETRY_AFTER_SECONDS)} if status == 503 else None
        return JSONResponse(error_body(exc.code, str(exc)), status_code=status, headers=headers)

    async def _unavailable(request: Request, exc: Exception) -> JSONResponse:
        if not db_errors.is_unavailable(exc):
            return _database_error(request, exc)
        log.warning("%s %s: database unavailable: %r", request.method, request.url.path, exc)
        return database_unavailable_response()

    # Registered per type (not only as the catch-all below) so Starlette answers them in its
    # exception middleware, like any handled error, instead of logging them as a crash.
    for error_type in db_errors.UNAVAILABLE_TYPES:
        app.add_exception_handler(error_type, _unavailable)
    app.add_exception_handler(DBAPIError, _unavailable)

    app.add_exception_handler(asyncpg.DataError, _database_error)

    @app.exception_handler(RPCError)
    async def _temporal_error(request: Request, exc: RPCError) -> JSONResponse:
        # One answer for Temporal trouble on every route that reaches it: a service that
        # expects a particular status (not found, say) catches it first.
        if exc.status == RPCStatusCode.NOT_FOUND:
            return JSONResponse(error_body("not_found", exc.message), status_code=404)
        log.warning("%s %s: Temporal unavailable: %r", request.method, request.url.path, exc)
        return JSONResponse(
            error_body("service_unavailable", f"Temporal is unavailable ({exc.message})"),
            status_code=503,
            headers={"Retry-After": str(db_errors.RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _anything_else(request: Request, exc: Exception) -> JSONResponse:
        if db_errors.is_unavailable(exc):
            return database_unavailable_response()
        return _database_error(request, exc)


def _database_error(request: Request, exc: Exception) -> JSONResponse:
    refused = db_errors.invalid_data(exc)
    if refused is None:
        return _internal_error(request, exc)
    # Nothing was written: the statement failed, and with it its transaction.
    message = str(refused).split("\n", 1)[0]
    return JSONResponse(
        error_body("invalid_value", f"a value in the request cannot be stored: {message}"),
        status_code=422,
    )


def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug: logged with its traceback, answered in the one error schema."""
    log.error("%s %s failed", request.method, request.url.path, exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "the request failed unexpectedly; it has been logged"),
        status_code=500,
    )


from api.schemas import ErrorResponse  # noqa: E402 - schemas import nothing from here
