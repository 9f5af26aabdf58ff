"""The embedded PostgreSQL the dev stack and the test harness run on."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from devstack.postgres import EmbeddedPostgres
from devstack.processes import DevStackError
from tests.harness import free_port


@pytest.fixture
def postgres(server_dir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(server_dir / "pg", free_port(), fsync=False)
    try:
        yield server
    finally:
        server.stop()


async def scalar(server: EmbeddedPostgres, query: str, database: str = "postgres") -> object:
    conn = await asyncpg.connect(server.url(database, driver="postgresql"))
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_starts_stops_and_starts_again_on_the_same_data(
    postgres: EmbeddedPostgres,
) -> None:
    postgres.start()
    first_pid = postgres.pid
    assert await scalar(postgres, "select 1") == 1
    assert postgres.ensure_database("billing") is True
    assert postgres.ensure_database("billing") is False
    await scalar(postgres, "create table kept as select 7 as id", "billing")
    postgres.stop()
    assert first_pid is not None
    assert not psutil.pid_exists(first_pid)

    assert postgres.initdb_if_needed() is False
    postgres.start()
    assert await scalar(postgres, "select id from kept", "billing") == 7


async def test_starts_after_the_server_was_killed(postgres: EmbeddedPostgres) -> None:
    postgres.start()
    assert postgres.pid is not None
    os.kill(postgres.pid, signal.SIGKILL)
    postgres.stop()  # reaps it, and kills the backends it left behind
    assert (postgres.data_dir / "postmaster.pid").exists()

    postgres.start()
    assert await scalar(postgres, "select 1") == 1


def test_a_port_in_use_fails_fast_with_the_server_log(server_dir: Path) -> None:
    with EmbeddedPostgres(server_dir / "a", free_port(), fsync=False) as running:
        clash = EmbeddedPostgres(server_dir / "b", running.port, fsync=False)
        began = time.monotonic()
        with pytest.raises(DevStackError, match="Address already in use"):
            clash.start()
        assert time.monotonic() - began < 10
        assert clash.pid is None
