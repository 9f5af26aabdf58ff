"""Sending commands to subscription workflows as Updates, with the API's timeout semantics.

An Update is first *admitted* by the server, then *accepted* by the workflow's validator, then
*completed*. The API waits at most `settings.update_timeout_seconds` for acceptance:

* not accepted in time (no worker polling, worker overloaded): 503, and nothing is applied,
  ever: the request carries `apply_before` (the API's deadline) and the validator rejects it if
  a worker only gets to it later, so a command the caller was told failed never surfaces later;
* accepted but not completed in time (e.g. Stripe slow): 202, the change is durable and will
  finish; the caller reads the subscription to see it;
* rejected by the validator: the domain error (409 for an invalid transition).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar, cast
from uuid import UUID

from temporalio.client import (
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
)
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.workflow import UpdateMethodMultiParam

from adapters.db import subscriptions as subscription_repo
from adapters.db.subscriptions import SubscriptionRow
from adapters.logs import REQUEST_ID
from billing.error_registry import decode
from billing.errors import BillingError, PaymentDeclined
from billing.payments import (
    PaymentMethodUnavailable,
    StripeCardRejected,
    StripeInvalidRequest,
    StripeNotFound,
)
from services.context import Services
from services.errors import Conflict, NotFound, ServiceError, ServiceUnavailable

T = TypeVar("T")
A = TypeVar("A")


class StillRunning(ServiceError):
    status_code = 202
    code = "accepted"


def apply_before(services: Services) -> str:
    deadline = services.clock() + timedelta(seconds=services.settings.update_timeout_seconds)
    return deadline.isoformat()


async def run_update(
    services: Services,
    workflow_id: str,
    update: UpdateMethodMultiParam[[Any, A], Coroutine[Any, Any, T]],
    arg: A,
) -> T:
    """Send `update` (a `@workflow.update` method of the workflow class: its name and its result
    type come from it, never from a string)."""
    timeout = services.settings.update_timeout_seconds
    handle = services.temporal.get_workflow_handle(workflow_id)
    arg = _with_request_id(arg)
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout):
            # (An async update's result type is the coroutine's, as temporalio types it.)
            update_handle = cast(
                WorkflowUpdateHandle[T],
                await handle.start_update(update, arg, wait_for_stage=WorkflowUpdateStage.ACCEPTED),
            )
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
        raise ServiceUnavailable(
            f"no billing worker accepted the request within {timeout:g}s; nothing was changed, "
            "retry later"
        ) from error
    except WorkflowUpdateFailedError as error:
        raise _domain(error) from error
    except RPCError as error:
        if error.status == RPCStatusCode.NOT_FOUND:
            raise Conflict("the subscription's workflow has ended; nothing was changed") from error
        raise ServiceUnavailable(f"Temporal is unavailable ({error.message})") from error
    try:
        remaining = max(0.1, timeout - (time.monotonic() - started))
        async with asyncio.timeout(remaining):
            result: T = await update_handle.result()
            return result
    except WorkflowUpdateFailedError as error:
        raise _domain(error) from error
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError) as error:
        raise StillRunning(
            "the change was accepted and is still being applied; read the subscription to see "
            "when it is done"
        ) from error


def _with_request_id(arg: A) -> A:
    """The command stamped with the API request sending it (its X-Request-Id), when the
    command's type carries a `request_id` that is not set yet: the workflow names it in the
    audit row of the change the command makes (ADR 0019)."""
    request_id = REQUEST_ID.get()
    if request_id is None or not dataclasses.is_dataclass(arg) or isinstance(arg, type):
        return arg
    # A type without the field reads as "" here, a stamped command as its id: both unchanged.
    if getattr(arg, "request_id", "") is not None:
        return arg
    return cast(A, dataclasses.replace(arg, request_id=request_id))


def _domain(error: WorkflowUpdateFailedError) -> Exception:
    """The first application error in the failure's cause chain decides the answer: its type
    is decoded through the domain's error registry (`billing.errors.decode`), then presented."""
    cause: BaseException | None = error.cause
    while cause is not None and not isinstance(cause, ApplicationError):
        cause = cause.__cause__
    domain = decode(cause.type, cause.message) if isinstance(cause, ApplicationError) else None
    if domain is None:
        return ServiceUnavailable(f"the subscription workflow failed the request: {error.cause}")
    return _presented(domain)


def _presented(error: BillingError) -> Exception:
    """What the caller sees of a Stripe refusal met while applying a command."""
    match error:
        case StripeCardRejected():
            return PaymentDeclined(f"the card was refused: {error.message}")
        case StripeNotFound() | PaymentMethodUnavailable():
            # One answer for "no such card" and "another account's card": it reveals nothing.
            return PaymentMethodRefused(error.message)
        case StripeInvalidRequest():
            return InvalidRequest(error.message)
    return error


class InvalidRequest(ServiceError):
    status_code = 422
    code = "invalid_request"


class PaymentMethodRefused(InvalidRequest):
    code = "payment_method_unavailable"


async def live_subscription(services: Services, tenant_id: UUID) -> SubscriptionRow:
    async with services.tenant_db.tenant_transaction(tenant_id) as conn:
        row = await subscription_repo.get_live_subscription(conn, tenant_id)
    if row is None:
        raise NotFound("this tenant has no live subscription")
    return row


async def command(
    services: Services,
    tenant_id: UUID,
    workflow_id: str,
    update: UpdateMethodMultiParam[[Any, A], Coroutine[Any, Any, T]],
    arg: A,
) -> T:
    """`run_update`, then forget the tenant's cached quota rows: a plan change, pause or cancel
    changes its quotas, and this process's next check must not wait for the notification."""
    try:
        return await run_update(services, workflow_id, update, arg)
    finally:
        services.quota_cache.invalidate(tenant_id)
