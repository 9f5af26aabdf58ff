"""docs/notifications.md lists exactly the notification types the code emits: the catalogue
table equals `EVENT_TYPES`, every type is sent by some code, and no code spells a type out by
hand (so a new type cannot be sent without being declared, and then documented)."""

from __future__ import annotations

import ast
import re

from config import ROOT
from workflows import notify

SOURCES = ("workflows", "activities", "api", "adapters", "billing", "services")


def _documented() -> set[str]:
    text = (ROOT / "docs" / "notifications.md").read_text()
    table = text.split("## Catalogue of event types", 1)[1]
    return set(re.findall(r"^\| `([a-z_.]+)` \|", table, flags=re.MULTILINE))


def _modules() -> list[tuple[str, ast.Module]]:
    return [
        (str(path.relative_to(ROOT)), ast.parse(path.read_text()))
        for folder in SOURCES
        for path in sorted((ROOT / folder).rglob("*.py"))
    ]


def _constant_names() -> dict[str, str]:
    return {
        name: value
        for name, value in vars(notify).items()
        if name.isupper() and isinstance(value, str) and value in notify.EVENT_TYPES
    }


def test_the_catalogue_lists_exactly_the_declared_types() -> None:
    assert _documented() == set(notify.EVENT_TYPES)


def test_every_declared_type_is_sent_somewhere() -> None:
    used: set[str] = set()
    for path, tree in _modules():
        if path == "workflows/notify.py":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                used.add(node.id)
            elif isinstance(node, ast.Attribute):
                used.add(node.attr)
            elif isinstance(node, ast.alias):
                used.add(node.asname or node.name)
    names = _constant_names()
    assert set(names.values()) == set(notify.EVENT_TYPES)
    assert {value for name, value in names.items() if name not in used} == set()


def test_no_code_sends_a_type_spelled_out_by_hand() -> None:
    literal = [
        (path, node.lineno)
        for path, tree in _modules()
        for node in ast.walk(tree)
        if (
            isinstance(node, ast.keyword)
            and node.arg == "event_type"
            and isinstance(node.value, ast.Constant)
        )
        or (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", getattr(node.func, "attr", None))
            in ("DunningNotification", "notify", "_notify")
            and node.args
            and isinstance(node.args[0], ast.Constant)
        )
    ]
    assert not literal, literal
