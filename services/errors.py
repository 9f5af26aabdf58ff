"""The ways a use case refuses or fails, with the status class a caller answers them with.

Each kind has a stable `code` (the error body's) and a `status_code` (the HTTP status the API
answers; the CLI exits non-zero). Domain rule violations are `billing.errors.BillingError`s
instead; these are what the use cases themselves add: a missing row, a conflict with what is
stored, a value outside what a use case accepts, a dependency that is down.
"""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class Unauthorized(ServiceError):
    status_code = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status_code = 403
    code = "forbidden"


class NotFound(ServiceError):
    status_code = 404
    code = "not_found"


class SubscriptionPaused(ServiceError):
    """Usage while the subscription is paused: the paused period is closed and billed, and no
    period is open until it resumes."""

    status_code = 402
    code = "subscription_paused"


class Conflict(ServiceError):
    status_code = 409
    code = "conflict"


class FieldInvalid(ServiceError):
    """A value that parsed but breaks a business rule: answered like a validation error (422
    naming the field), so callers handle both the same way."""

    status_code = 422
    code = "validation_error"

    def __init__(self, field: str, message: str, location: str = "body") -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.field_message = message
        self.location = location


class ServiceUnavailable(ServiceError):
    status_code = 503
    code = "service_unavailable"


class RateLimited(ServiceError):
    status_code = 429
    code = "rate_limited"

    def __init__(self, route_class: str, limit: int, window_seconds: int, reset: int) -> None:
        super().__init__(
            f"rate limit of {limit} {route_class} requests per {window_seconds} s reached; "
            f"retry in {reset} s"
        )
        self.route_class = route_class
        self.limit = limit
        self.window_seconds = window_seconds
        self.reset = reset

    def headers(self) -> dict[str, str]:
        """`Retry-After`, and the RateLimit fields of the IETF draft."""
        return {
            "Retry-After": str(self.reset),
            "RateLimit-Limit": str(self.limit),
            "RateLimit-Remaining": "0",
            "RateLimit-Reset": str(self.reset),
            "RateLimit-Policy": f"{self.limit};w={self.window_seconds}",
        }
