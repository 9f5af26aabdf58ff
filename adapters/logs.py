"""Logs: human-readable by default, or one JSON object per line (`BILLING_LOG_FORMAT=json`).

A JSON line carries what is known where it was written: the request id and tenant of an API
request (context variables the API sets per request), and the workflow id, run id and
activity or workflow type of Temporal code (from what the SDK's loggers attach, or the running
activity's info).
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from temporalio import activity

__all__ = ["REQUEST_ID", "TENANT_ID", "JsonFormatter", "RequestIds", "configure"]

REQUEST_ID: ContextVar[str | None] = ContextVar("billing_request_id", default=None)
TENANT_ID: ContextVar[str | None] = ContextVar("billing_tenant_id", default=None)
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
# A caller's X-Request-Id is kept when it is short and plain; otherwise the API makes one.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, var in (("request_id", REQUEST_ID), ("tenant_id", TENANT_ID)):
            value = var.get()
            if value:
                entry[key] = value
        entry.update(_temporal(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def _temporal(record: logging.LogRecord) -> dict[str, Any]:
    """Workflow and activity identity: the SDK's loggers attach it as `temporal_workflow` and
    `temporal_activity`; any other logger inside an activity gets it from the activity."""
    found: dict[str, Any] = {}
    workflow_info = getattr(record, "temporal_workflow", None)
    if isinstance(workflow_info, dict):
        found["workflow_id"] = workflow_info.get("workflow_id")
        found["run_id"] = workflow_info.get("run_id")
        found["workflow_type"] = workflow_info.get("workflow_type")
    activity_info = getattr(record, "temporal_activity", None)
    if isinstance(activity_info, dict):
        found["workflow_id"] = activity_info.get("workflow_id")
        found["run_id"] = activity_info.get("workflow_run_id")
        found["activity_type"] = activity_info.get("activity_type")
    elif not found and activity.in_activity():
        info = activity.info()
        found.update(
            workflow_id=info.workflow_id,
            run_id=info.workflow_run_id,
            activity_type=info.activity_type,
        )
    return {k: v for k, v in found.items() if v}


def configure(log_format: str) -> None:
    """The process's logging: warnings from everything, info from the engine's own loggers."""
    handler = logging.StreamHandler()
    handler.setFormatter(
        JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    logging.getLogger("billing").setLevel(logging.INFO)


Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class RequestIds:
    """Pure ASGI middleware: each request gets an id (the caller's `X-Request-Id` when it is
    plain, otherwise a new one), echoed in the answer's `X-Request-Id` and put on every log
    line written while the request runs; the tenant is added once the API key says whose."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next(
            (v.decode("latin-1") for k, v in scope.get("headers") or () if k == b"x-request-id"),
            "",
        )
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        request_token = REQUEST_ID.set(request_id)
        tenant_token = TENANT_ID.set(None)

        async def send_with_id(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers.append((b"x-request-id", request_id.encode()))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            TENANT_ID.reset(tenant_token)
            REQUEST_ID.reset(request_token)
