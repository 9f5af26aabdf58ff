"""Lint: no test reads the clock when its module is imported.

A value such as ``datetime.now(UTC) + timedelta(minutes=10)`` in a ``parametrize`` list is
computed at collection. The full suite runs for about ten minutes, so by the time the test runs
"ten minutes ahead" is already in the past, and the test fails on a slow machine only (CI did
exactly that once). Instants belong in the test body or a fixture; a parametrize list carries an
offset instead.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
CLOCK_READS = {"now", "utcnow", "today", "time", "monotonic", "perf_counter"}


def _evaluated_at_import(tree: ast.Module) -> Iterator[ast.AST]:
    """The expressions Python evaluates when the module is imported."""

    def visit(node: ast.AST) -> Iterator[ast.AST]:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            yield from node.decorator_list
            yield from node.args.defaults
            yield from (d for d in node.args.kw_defaults if d is not None)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, ast.ClassDef):
            yield from node.decorator_list
            for statement in node.body:
                yield from visit(statement)
            return
        if isinstance(node, ast.expr):
            yield node
            return
        for child in ast.iter_child_nodes(node):
            yield from visit(child)

    for statement in tree.body:
        yield from visit(statement)


def _clock_reads(root: ast.AST) -> Iterator[ast.Call]:
    stack = [root]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Lambda):
            continue  # runs when called, not at import
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in CLOCK_READS
        ):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def _findings(source: str, name: str) -> list[str]:
    tree = ast.parse(source)
    return [
        f"{name}:{call.lineno}: {ast.unparse(call)}"
        for root in _evaluated_at_import(tree)
        for call in _clock_reads(root)
    ]


def test_no_test_module_reads_the_clock_at_import() -> None:
    findings = [
        finding
        for path in sorted(TESTS.rglob("*.py"))
        for finding in _findings(path.read_text(), str(path.relative_to(TESTS.parent)))
    ]
    assert findings == [], "read the clock in the test or a fixture:\n" + "\n".join(findings)


def test_the_lint_sees_parametrize_lists_module_constants_and_defaults() -> None:
    source = """
import pytest
from datetime import UTC, datetime
NOW = datetime.now(UTC)
@pytest.mark.parametrize("at", [datetime.now(UTC)])
def test_a(at, when=datetime.now(UTC)):
    inside = datetime.now(UTC)
lazy = lambda: datetime.now(UTC)
"""
    assert [f.split(":")[1] for f in _findings(source, "m")] == ["4", "5", "6"]
