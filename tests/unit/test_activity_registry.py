"""The typed activity contract (`workflows/activity_refs.py`) and the worker's registrations agree:
every registered activity has a reference with the same name, input type and result type;
every reference is registered and called by some workflow; and no workflow calls an activity
by a string. A dead activity, a call nobody serves (a task that would wait in its queue until
its timeout), or an implementation whose types drifted from the contract fails here."""

from __future__ import annotations

import ast
import inspect
import typing
from collections.abc import Callable
from typing import Any

from temporalio import activity

from config import ROOT
from worker import main_queue_activities, stripe_queue_activities
from workflows import activity_refs

CALLS = ("execute_activity", "start_activity", "execute_local_activity", "start_local_activity")


def _registered() -> dict[str, Callable[..., Any]]:
    nothing: Any = None
    functions = [
        *main_queue_activities(nothing, nothing, nothing, gauges=()),
        *stripe_queue_activities(nothing),
    ]
    by_name: dict[str, Callable[..., Any]] = {}
    for fn in functions:
        definition = activity._Definition.from_callable(fn)
        assert definition is not None, fn
        assert definition.name is not None, fn
        by_name[definition.name] = fn
    return by_name


def _workflow_trees() -> list[tuple[str, ast.Module]]:
    return [
        (path.name, ast.parse(path.read_text()))
        for path in sorted((ROOT / "workflows").rglob("*.py"))
        if path.name != "activity_refs.py"
    ]


def test_every_registered_activity_matches_its_reference() -> None:
    refs = {ref.name: ref for ref in activity_refs.ALL}
    registered = _registered()
    assert set(registered) == set(refs)
    for name, fn in registered.items():
        hints = typing.get_type_hints(fn)
        first = next(iter(inspect.signature(fn).parameters))
        assert hints[first] is refs[name].input, name
        assert hints["return"] is refs[name].result, name


def test_every_activity_translates_domain_errors() -> None:
    """One place (workflows/errors.py) turns a BillingError into an ApplicationError typed by its
    code: every activity carries it, so none can leak a domain exception to the worker."""
    missing = [
        name for name, fn in _registered().items()
        if not getattr(fn, "translates_domain_errors", False)
    ]  # fmt: skip
    assert not missing, missing


def test_every_reference_is_called_by_a_workflow() -> None:
    used = {
        node.attr
        for _, tree in _workflow_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
        if node.value.id == "refs"
    }
    declared = {
        k for k, v in vars(activity_refs).items() if isinstance(v, activity_refs.ActivityRef)
    }
    assert declared - used == set()


def test_no_workflow_calls_an_activity_by_name() -> None:
    by_name = [
        (name, node.lineno)
        for name, tree in _workflow_trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in CALLS
    ]
    assert not by_name, by_name
