"""Lint: workflow modules import sibling modules by their full name (`import workflows.notify
as notice`, `from workflows.subscription_io import X`), never as `from workflows import notify`.
The sandbox passes the first form through from the host; the second it imports anew for every
workflow run, re-creating every dataclass of the module each time: that doubled the
subscription-year bench (0.79 -> 1.62 s per subscription-year) before this test existed."""

from __future__ import annotations

import ast

from config import ROOT


def test_no_workflow_module_imports_a_sibling_as_a_package_attribute() -> None:
    found = [
        (path.name, node.lineno)
        for path in sorted((ROOT / "workflows").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module == "workflows"
    ]
    assert not found, found
