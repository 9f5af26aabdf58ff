from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def server_dir() -> Iterator[Path]:
    """A scratch dir for Postgres data, outside pytest's `tmp_path`.

    As root, Postgres runs as another user that must traverse every parent of its data dir, and
    every pytest session that starts re-tightens /tmp/pytest-of-root to 0700: a concurrent run
    would make initdb or a start fail with "Permission denied".
    """
    path = Path(tempfile.mkdtemp(prefix="devstack-test-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
