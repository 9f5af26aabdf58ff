"""Every ADR follows the template of docs/adr/README.md: a numbered title, a status line, and
the Context, Decision(s) and Consequences sections in that order; the index lists every ADR."""

from __future__ import annotations

import re

import pytest

from config import ROOT

ADRS = sorted((ROOT / "docs" / "adr").glob("[0-9][0-9][0-9][0-9]-*.md"))


@pytest.mark.parametrize("path", ADRS, ids=[p.stem for p in ADRS])
def test_the_adr_follows_the_template(path) -> None:  # type: ignore[no-untyped-def]
    text = path.read_text()
    number = path.name[:4]
    assert re.match(rf"# ADR {number}: \S", text), "title: '# ADR NNNN: ...'"
    assert re.search(r"^Status: accepted", text, re.M), "a 'Status: accepted ...' line"
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert "Context" in headings
    decision = next(h for h in headings if h in ("Decision", "Decisions"))
    assert "Consequences" in headings
    assert headings.index("Context") < headings.index(decision) < headings.index("Consequences")


def test_the_index_lists_every_adr() -> None:
    index = (ROOT / "docs" / "adr" / "README.md").read_text()
    assert ADRS
    for path in ADRS:
        assert f"({path.name})" in index, path.name
