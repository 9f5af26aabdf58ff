"""A small process supervisor for the embedded stack.

Children run in their own session so that Ctrl-C in a terminal reaches only the launcher, which then
stops them in reverse start order. Each child's output is re-printed line by line, prefixed with its
name, so the interleaved logs of Postgres, Temporal, the worker and the API stay readable.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO, TextIO

DEFAULT_STOP_TIMEOUT = 10.0
_COLOURS = ("36", "33", "35", "32", "34", "91", "96", "93")
_SHUTDOWN_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class DevStackError(Exception):
    """A component could not start or stopped working; the message says which and why."""


class ChildExited(DevStackError):
    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} exited unexpectedly with code {returncode}")
        self.name = name
        self.returncode = returncode


class CommandFailed(DevStackError):
    def __init__(self, name: str, returncode: int) -> None:
        super().__init__(f"{name} failed with code {returncode}")
        self.name = name
        self.returncode = returncode


class StopRequested(Exception):
    """Raised out of a wait when a shutdown signal arrived while the stack was starting."""


@dataclass(frozen=True)
class ChildSpec:
    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    cwd: Path | None = None
    # Run as this OS user (the embedded Postgres refuses to run as root).
    user: str | None = None
    # Postgres wants SIGINT ("fast shutdown"); SIGTERM would wait for clients to disconnect.
    stop_signal: signal.Signals = signal.SIGTERM
    # Drop its output once it is asked to stop: for children whose shutdown is a burst of
    # alarming but meaningless warnings (the Temporal dev server's).
    quiet_stop: bool = False


def spawn(
    spec: ChildSpec,
    *,
    stdout: int | IO[bytes] | None = subprocess.PIPE,
    stderr: int | IO[bytes] | None = subprocess.STDOUT,
) -> subprocess.Popen[bytes]:
    """Start `spec` as the leader of a new session, so its process group is its pid.

    `stdout`/`stderr` as for `subprocess.Popen` (None inherits ours).
    """
    return subprocess.Popen(
        list(spec.argv),
        stdin=subprocess.DEVNULL,
        stdout=stdout,
        stderr=stderr,
        env=dict(spec.env) if spec.env is not None else None,
        cwd=spec.cwd,
        user=spec.user,
        start_new_session=True,
    )


def stop_process(
    proc: subprocess.Popen[bytes],
    stop_signal: signal.Signals = signal.SIGTERM,
    timeout: float = DEFAULT_STOP_TIMEOUT,
) -> int:
    """Ask a child started by `spawn` to stop, kill it after `timeout`, and return its exit code.

    The graceful signal goes to the pid only (Postgres backends must not get the postmaster's
    signal); afterwards the whole process group is killed, so nothing the child forked outlives it.
    """
    if proc.poll() is None:
        try:
            os.kill(proc.pid, stop_signal)
        except ProcessLookupError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc.pid)
            proc.wait()
    _kill_group(proc.pid)
    return proc.returncode


def _kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        # ProcessLookupError: the group is already empty. PermissionError: macOS reports it for
        # a group whose only member is a zombie.
        pass


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could bind `port`: checked before starting one, because a readiness
    probe on a taken port would be answered by whatever holds it."""
    with socket.socket() as probe:
        # Servers set SO_REUSEADDR too, so a port in TIME_WAIT from an earlier run counts as free.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def wait_until(
    check: Callable[[], bool],
    *,
    what: str,
    timeout: float,
    abort: Callable[[], None] = lambda: None,
    interval: float = 0.05,
) -> float:
    """Poll `check` until it is true and return the seconds it took.

    `abort` raises to end the wait early (a child died, a shutdown was requested).
    """
    started = time.monotonic()
    deadline = started + timeout
    while True:
        abort()
        if check():
            return time.monotonic() - started
        if time.monotonic() > deadline:
            raise DevStackError(f"{what} was not ready after {timeout:.0f} s")
        time.sleep(interval)


@dataclass
class Child:
    spec: ChildSpec
    proc: subprocess.Popen[bytes]
    # A one-shot command is expected to exit; a long-running child that exits is a failure.
    one_shot: bool = False
    pumps: list[threading.Thread] = field(default_factory=list)
    stopping: bool = False

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.proc.pid


class Supervisor:
    """Starts named children, prefixes their output, and stops them all in reverse order.

    Use it as a context manager: leaving the block stops every child still running.
    """

    def __init__(
        self,
        out: TextIO | None = None,
        *,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        colour: bool | None = None,
    ) -> None:
        self._out = out if out is not None else sys.stdout
        self._stop_timeout = stop_timeout
        if colour is None:
            colour = self._out.isatty() and "NO_COLOR" not in os.environ
        self._colour = colour
        self._lock = threading.Lock()
        self._children: list[Child] = []
        self._colour_of: dict[str, str] = {}
        self.stop_requested = threading.Event()

    def __enter__(self) -> Supervisor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    @contextmanager
    def handle_signals(self) -> Iterator[None]:
        """Turn SIGINT, SIGTERM and SIGHUP into `stop_requested` while the block runs."""

        def request_stop(signum: int, frame: FrameType | None) -> None:
            self.stop_requested.set()

        previous = {sig: signal.signal(sig, request_stop) for sig in _SHUTDOWN_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    @property
    def children(self) -> list[Child]:
        return list(self._children)

    def say(self, message: str, *, name: str = "dev") -> None:
        """Print a line with the launcher's own prefix."""
        self._emit(name, message)

    def announce(self, text: str) -> None:
        """Print a block as is (no prefix), between other children's lines."""
        with self._lock:
            self._out.write(text + "\n")
            self._out.flush()

    def start(self, spec: ChildSpec) -> Child:
        """Start a long-running child whose stdout and stderr are merged and prefixed."""
        child = Child(spec, spawn(spec))
        self._children.append(child)
        assert child.proc.stdout is not None
        child.pumps.append(self._pump(child, child.proc.stdout, echo=True, into=None))
        return child

    def run_once(
        self,
        spec: ChildSpec,
        *,
        timeout: float | None = None,
        capture_stdout: bool = False,
    ) -> str:
        """Run a command to completion with prefixed output; raise `CommandFailed` if it fails.

        With `capture_stdout` its stdout is returned instead of printed (stderr is still shown):
        it may be a secret meant for the banner only.
        """
        proc = spawn(spec, stderr=subprocess.PIPE)
        child = Child(spec, proc, one_shot=True)
        self._children.append(child)
        captured: list[str] = []
        assert proc.stdout is not None
        assert proc.stderr is not None
        child.pumps.append(
            self._pump(
                child,
                proc.stdout,
                echo=not capture_stdout,
                into=captured if capture_stdout else None,
            )
        )
        child.pumps.append(self._pump(child, proc.stderr, echo=True, into=None))
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while proc.poll() is None:
                self.check()
                if deadline is not None and time.monotonic() > deadline:
                    raise DevStackError(f"{spec.name} did not finish within {timeout:.0f} s")
                try:
                    proc.wait(0.1)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self._retire(child)
        if proc.returncode != 0:
            raise CommandFailed(spec.name, proc.returncode)
        return "".join(captured)

    def check(self) -> None:
        """Raise `StopRequested` after a shutdown signal, `ChildExited` when a child died."""
        if self.stop_requested.is_set():
            raise StopRequested
        for child in self._children:
            code = child.proc.poll()
            if code is not None and not (child.stopping or child.one_shot):
                raise ChildExited(child.name, code)

    def wait_for(self, what: str, check: Callable[[], bool], *, timeout: float) -> float:
        """`wait_until` that gives up as soon as a child dies or a shutdown is requested."""
        return wait_until(check, what=what, timeout=timeout, abort=self.check)

    def wait(self) -> None:
        """Block until a shutdown is requested (return) or a child exits (raise `ChildExited`)."""
        while True:
            try:
                self.check()
            except StopRequested:
                return
            self.stop_requested.wait(0.2)

    def stop_all(self) -> None:
        """Stop every child still running, newest first."""
        for child in reversed(self._children):
            self._retire(child)

    def _retire(self, child: Child) -> None:
        child.stopping = True
        if child.proc.poll() is None:
            self.say(f"stopping {child.name} (pid {child.pid})")
        stop_process(child.proc, child.spec.stop_signal, self._stop_timeout)
        for pump in child.pumps:
            pump.join(timeout=2)
        if child in self._children:
            self._children.remove(child)

    def _pump(
        self, child: Child, stream: IO[bytes], *, echo: bool, into: list[str] | None
    ) -> threading.Thread:
        def run() -> None:
            with stream:
                for raw in stream:
                    line = raw.decode("utf-8", errors="replace")
                    if into is not None:
                        into.append(line)
                    if echo and not (child.stopping and child.spec.quiet_stop):
                        self._emit(child.name, line.rstrip("\r\n"))

        thread = threading.Thread(target=run, name=f"output-{child.name}", daemon=True)
        thread.start()
        return thread

    def _emit(self, name: str, line: str) -> None:
        with self._lock:
            prefix = f"[{name}]"
            if self._colour:
                code = self._colour_of.setdefault(
                    name, _COLOURS[len(self._colour_of) % len(_COLOURS)]
                )
                prefix = f"\033[{code}m{prefix}\033[0m"
            self._out.write(f"{prefix} {line}\n")
            self._out.flush()
