"""Every activity the workers register is called by some workflow, and every activity a workflow
calls is registered: a dead activity, or a call by a name nobody serves (a task that would sit
in the queue until its timeout), fails here."""

from __future__ import annotations

import ast
from typing import Any

from temporalio import activity

from config import ROOT
from worker import main_queue_activities, stripe_queue_activities

CALLS = ("execute_activity", "start_activity", "execute_local_activity", "start_local_activity")


def _registered() -> set[str]:
    nothing: Any = None
    functions = [
        *main_queue_activities(nothing, nothing, nothing, gauges=()),
        *stripe_queue_activities(nothing),
    ]
    names = set()
    for fn in functions:
        definition = activity._Definition.from_callable(fn)
        assert definition is not None, fn
        assert definition.name is not None, fn
        names.add(definition.name)
    return names


def _called() -> set[str]:
    names: set[str] = set()
    for path in sorted((ROOT / "workflows").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in CALLS
                and node.args
            ):
                first = node.args[0]
                assert isinstance(first, ast.Constant), (path, node.lineno, "call by name")
                names.add(str(first.value))
    return names


def test_every_registered_activity_is_called() -> None:
    assert _registered() - _called() == set()


def test_every_called_activity_is_registered() -> None:
    assert _called() - _registered() == set()
