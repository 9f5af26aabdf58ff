"""`billing dev` end to end, with a stand-in for the engine's own commands (tests/devstack/
fake_billing.py) on the real embedded Postgres, Temporal dev server and localstripe."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from config import ROOT
from tests.harness import free_port

FAKE_BILLING = [sys.executable, "-m", "tests.devstack.fake_billing"]
RUN_DEV = (
    "import sys; from config import load_settings; from devstack.launcher import run_dev;"
    f"sys.exit(run_dev(load_settings(), time_scale=720.0, app_command={FAKE_BILLING!r}))"
)
BANNER_END = "Ctrl-C to stop"


@dataclass
class Launch:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def read_until(self, marker: str, timeout: float = 60) -> None:
        assert self.proc.stdout is not None
        if any(marker in line for line in self.lines):
            return
        deadline = time.monotonic() + timeout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            if marker in line:
                return
            assert time.monotonic() < deadline, f"no {marker!r} in:\n" + "\n".join(self.lines)
        raise AssertionError(f"exited without {marker!r}:\n" + "\n".join(self.lines))

    def finish(self, timeout: float = 30) -> int:
        assert self.proc.stdout is not None
        self.lines += self.proc.stdout.read().splitlines()
        return self.proc.wait(timeout)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def dev_env(server_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env.update(
        BILLING_DATA_DIR=str(server_dir / "data"),
        BILLING_POSTGRES_PORT=str(free_port()),
        BILLING_TEMPORAL_PORT=str(free_port()),
        BILLING_TEMPORAL_UI_PORT=str(free_port()),
        BILLING_LOCALSTRIPE_PORT=str(free_port()),
        BILLING_API_PORT=str(free_port()),
    )
    return env


@pytest.fixture
def launch(dev_env: dict[str, str]) -> Iterator[type[Launch]]:
    started: list[Launch] = []

    class Tracked(Launch):
        def __init__(self, extra_env: dict[str, str] | None = None) -> None:
            super().__init__(
                subprocess.Popen(
                    [sys.executable, "-c", RUN_DEV],
                    cwd=ROOT,
                    env={**dev_env, **(extra_env or {})},
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    text=True,
                )
            )
            started.append(self)

    yield Tracked
    for launched in started:
        if launched.proc.poll() is None:
            # Stop it as a user would, so it still stops its own children.
            launched.proc.send_signal(signal.SIGINT)
            try:
                launched.proc.wait(30)
            except subprocess.TimeoutExpired:
                launched.proc.kill()
                launched.proc.wait()


def descendants(pid: int) -> list[psutil.Process]:
    return psutil.Process(pid).children(recursive=True)


def alive(processes: list[psutil.Process]) -> list[str]:
    survivors = []
    for process in processes:
        try:
            if process.status() != psutil.STATUS_ZOMBIE:
                survivors.append(f"{process.pid} {process.cmdline()}")
        except psutil.NoSuchProcess:
            pass
    return survivors


def test_runs_the_stack_and_starts_again_on_the_same_data(
    launch: type[Launch], dev_env: dict[str, str]
) -> None:
    first = launch()
    first.read_until(BANNER_END)
    # The stand-in worker's lines may trail the banner on a loaded machine.
    first.read_until("[worker] BILLING_TEMPORAL_ADDRESS")
    children = descendants(first.proc.pid)
    first.proc.send_signal(signal.SIGTERM)
    assert first.finish() == 0, first.output
    assert alive(children) == []

    out = first.output
    assert "initialised a new PostgreSQL cluster" in out
    assert "created database billing" in out
    assert "[migrate] migrated" in out
    assert "  op_fake_key_1" in out  # in the banner, not as a child's output line
    assert "[operator-key] looking for an operator key" in out
    assert "[worker] BILLING_STRIPE_WEBHOOK_SECRETS=whsec_" in out
    assert "localstripe webhooks -> http://127.0.0.1:" in out
    assert f"[worker] BILLING_TEMPORAL_ADDRESS=127.0.0.1:{dev_env['BILLING_TEMPORAL_PORT']}" in out
    port = dev_env["BILLING_POSTGRES_PORT"]
    assert (
        f"[worker] BILLING_DATABASE_URL=postgresql+asyncpg://postgres@127.0.0.1:{port}/billing"
        in out
    )
    assert (
        f"[worker] BILLING_STRIPE_API_BASE=http://127.0.0.1:{dev_env['BILLING_LOCALSTRIPE_PORT']}"
        in out
    )
    assert "[worker] BILLING_TIME_SCALE=720.0" in out
    assert "[worker] BILLING_ENVIRONMENT=dev" in out
    assert f"Temporal UI  http://127.0.0.1:{dev_env['BILLING_TEMPORAL_UI_PORT']}" in out
    assert f"API docs     http://127.0.0.1:{dev_env['BILLING_API_PORT']}/docs" in out

    second = launch()
    second.read_until(BANNER_END)
    second.proc.send_signal(signal.SIGINT)
    assert second.finish() == 0, second.output
    assert "initialised" not in second.output
    assert "created database" not in second.output
    assert "An operator key exists already" in second.output


def test_a_child_that_dies_stops_the_stack_and_is_named(launch: type[Launch]) -> None:
    # Only Postgres is embedded here (the stand-in needs no Temporal or Stripe), to keep it quick.
    run = launch(
        {
            "FAKE_BILLING_CRASH": "worker",
            "BILLING_TEMPORAL_ADDRESS": "127.0.0.1:1",
            "BILLING_STRIPE_API_KEY": "sk_test_configured",
        }
    )
    assert run.finish(timeout=60) == 1
    assert "error: worker exited unexpectedly with code 3" in run.output
    assert "stopping postgres" in run.output


def test_configured_services_are_not_started(launch: type[Launch]) -> None:
    run = launch(
        {
            "BILLING_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:{free_port()}/x",
            "BILLING_TEMPORAL_ADDRESS": "127.0.0.1:1",
            "BILLING_STRIPE_API_KEY": "sk_test_configured",
        }
    )
    assert run.finish(timeout=30) == 1
    assert "[postgres]" not in run.output
    assert "[temporal]" not in run.output
    assert "[localstripe]" not in run.output
    # The stand-in's migrate cannot reach the configured (absent) database.
    assert "error: migrate failed with code 1" in run.output


@pytest.mark.parametrize("command", ["migrate", "seed", "operator-key", "worker", "api"])
def test_the_stack_runs_every_billing_command_it_needs(command: str) -> None:
    """`make run` starts these through `BILLING_CLI` (`python -m cli ...`); `--help` exits 0
    only for a subcommand the parser knows, before any settings load."""
    from devstack.launcher import BILLING_CLI

    completed = subprocess.run(
        [*BILLING_CLI, command, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
