"""Lint: the Temporal UI tells the story (ADR 0011). Every activity a workflow runs and every
timer it sets carries a summary, and every workflow keeps its current details up to date, so
an operator reads a run's timeline and state without decoding payloads."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from config import ROOT

WORKFLOW_FILES = sorted(
    p for p in (ROOT / "workflows").rglob("*.py") if not p.name.endswith("_io.py")
)
# The option sets of workflows/retry.py: each takes the summary as an argument.
OPTION_SETS = {"db_activity", "local_db_activity", "stripe_read", "stripe_write"}
ACTIVITY_CALLS = {"call", "call_local", "run", "execute_activity", "execute_local_activity"}


def _name(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Name):
        return node.id
    return ""


def _has_summary(call: ast.Call, keyword: str) -> bool:
    for kw in call.keywords:
        if kw.arg == keyword:
            return True
        if kw.arg is None and isinstance(kw.value, ast.Call):  # **db_activity("...")
            if _name(kw.value.func) in OPTION_SETS:
                return True
    return False


def _calls(path: Path) -> list[ast.Call]:
    return [n for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Call)]


@pytest.mark.parametrize("path", WORKFLOW_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_activities_and_timers_carry_summaries(path: Path) -> None:
    missing = []
    for call in _calls(path):
        name = _name(call.func)
        if name in ACTIVITY_CALLS and not _has_summary(call, "summary"):
            missing.append(f"line {call.lineno}: {name} without summary")
        if name == "sleep" and not _has_summary(call, "summary"):
            missing.append(f"line {call.lineno}: sleep without summary")
        timed = any(kw.arg == "timeout" for kw in call.keywords)
        if name == "wait_condition" and timed and not _has_summary(call, "timeout_summary"):
            missing.append(f"line {call.lineno}: timed wait_condition without timeout_summary")
    # The helpers themselves pass **options through.
    if path.name == "activity_refs.py":
        missing = []
    assert missing == []


def test_every_workflow_keeps_its_current_details() -> None:
    without = []
    for path in WORKFLOW_FILES:
        tree = ast.parse(path.read_text())
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            decorated = any(_name(d.func if isinstance(d, ast.Call) else d) == "defn"
                            for d in cls.decorator_list)  # fmt: skip
            if not decorated:
                continue
            module = path.parent if path.parent.name == "subscription" else path
            files = sorted(module.glob("*.py")) if module.is_dir() else [module]
            if not any("set_current_details" in f.read_text() for f in files):
                without.append(f"{path.relative_to(ROOT)}: {cls.name}")
    assert without == []
