"""JSON logs (`BILLING_LOG_FORMAT=json`): the request id and tenant set for an API request, the
workflow and activity identity of Temporal code, and exceptions, on every line."""

from __future__ import annotations

import json
import logging

from temporalio.testing import ActivityEnvironment

from adapters import logs


def _line(record: logging.LogRecord) -> dict[str, object]:
    decoded: dict[str, object] = json.loads(logs.JsonFormatter().format(record))
    return decoded


def _record(message: str = "hello", **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("billing.test", logging.WARNING, __file__, 1, message, (), None)
    record.__dict__.update(extra)
    return record


def test_a_line_names_the_request_and_the_tenant() -> None:
    request_token = logs.REQUEST_ID.set("req-1")
    tenant_token = logs.TENANT_ID.set("tenant-1")
    try:
        line = _line(_record())
    finally:
        logs.TENANT_ID.reset(tenant_token)
        logs.REQUEST_ID.reset(request_token)
    assert line["message"] == "hello"
    assert line["level"] == "WARNING"
    assert (line["request_id"], line["tenant_id"]) == ("req-1", "tenant-1")
    assert "request_id" not in _line(_record())


def test_a_line_names_the_workflow_the_sdk_logger_reports() -> None:
    workflow = {"workflow_id": "subscription:s-1", "run_id": "r-1", "workflow_type": "subscription"}
    line = _line(_record(temporal_workflow=workflow))
    assert (line["workflow_id"], line["run_id"], line["workflow_type"]) == (
        "subscription:s-1",
        "r-1",
        "subscription",
    )


def test_any_logger_inside_an_activity_names_the_activity() -> None:
    def body() -> dict[str, object]:
        return _line(_record())

    line = ActivityEnvironment().run(body)
    assert line["activity_type"]
    assert line["workflow_id"]
    assert line["run_id"]


def test_an_exception_is_in_the_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "billing.test",
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            exc_info=__import__("sys").exc_info(),
        )
    assert "ValueError: boom" in str(_line(record)["exception"])


def test_configure_picks_the_format() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        logs.configure("json")
        assert isinstance(root.handlers[0].formatter, logs.JsonFormatter)
        logs.configure("text")
        assert not isinstance(root.handlers[0].formatter, logs.JsonFormatter)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
