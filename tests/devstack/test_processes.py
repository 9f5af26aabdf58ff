"""The supervisor behind `billing dev`: prefixed output, orderly stop, loud failure."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from config import ROOT
from devstack.processes import ChildExited, ChildSpec, CommandFailed, Supervisor


def python(name: str, code: str) -> ChildSpec:
    return ChildSpec(name, [sys.executable, "-c", code])


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def out() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def supervisor(out: io.StringIO) -> Iterator[Supervisor]:
    with Supervisor(out, stop_timeout=2.0, colour=False) as supervisor:
        yield supervisor


def test_one_shot_output_is_prefixed_and_stdout_can_be_captured(
    supervisor: Supervisor, out: io.StringIO
) -> None:
    code = "import sys; print('secret-key'); print('warming up', file=sys.stderr)"

    assert supervisor.run_once(python("migrate", code)) == ""
    captured = supervisor.run_once(python("operator-key", code), capture_stdout=True)

    lines = out.getvalue().splitlines()
    assert "[migrate] secret-key" in lines
    assert "[migrate] warming up" in lines
    assert captured == "secret-key\n"
    assert "[operator-key] warming up" in lines
    assert not any("operator-key] secret-key" in line for line in lines)


def test_failing_one_shot_names_the_command(supervisor: Supervisor) -> None:
    with pytest.raises(CommandFailed, match="migrate failed with code 4"):
        supervisor.run_once(python("migrate", "raise SystemExit(4)"))


def test_stop_all_stops_children_newest_first(supervisor: Supervisor, out: io.StringIO) -> None:
    first = supervisor.start(
        python("first", "import time; print('up', flush=True); time.sleep(60)")
    )
    second = supervisor.start(python("second", "import time; time.sleep(60)"))
    supervisor.wait_for("first", lambda: "[first] up" in out.getvalue(), timeout=10)

    supervisor.stop_all()

    assert gone(first.pid)
    assert gone(second.pid)
    stops = [line for line in out.getvalue().splitlines() if line.startswith("[dev] stopping")]
    assert [line.split()[2] for line in stops] == ["second", "first"]


def test_a_child_that_dies_is_reported_by_name(supervisor: Supervisor) -> None:
    sleeper = supervisor.start(python("sleeper", "import time; time.sleep(60)"))
    supervisor.start(python("crasher", "import time; time.sleep(0.2); raise SystemExit(3)"))

    with pytest.raises(ChildExited, match="crasher exited unexpectedly with code 3") as failure:
        supervisor.wait()
    supervisor.stop_all()

    assert failure.value.name == "crasher"
    assert gone(sleeper.pid)


def test_sigterm_stops_every_child_and_grandchild() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.devstack.supervised"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        pids: dict[str, int] = {}
        ready: set[str] = set()
        for line in proc.stdout:
            if line.startswith("{"):
                pids.update(json.loads(line))
            elif line.startswith("[forker] grandchild"):
                pids["grandchild"] = int(line.split()[-1])
                ready.add("forker")
            elif line.startswith(("[sleeper] sleeping", "[stubborn] ignoring")):
                ready.add(line[1:].split("]")[0])
            if len(pids) == 4 and ready == {"sleeper", "stubborn", "forker"}:
                break
        assert all(not gone(pid) for pid in pids.values())

        began = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=15) == 0
        stopped_in = time.monotonic() - began
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    assert {name: gone(pid) for name, pid in pids.items()} == dict.fromkeys(pids, True)
    # The stubborn child cost one stop timeout (1 s) before it was killed, not more.
    assert stopped_in < 5
