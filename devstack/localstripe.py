"""Start and stop localstripe as a separate process (see `devstack.localstripe_main`).

localstripe is GPL-3.0, so it is only ever a child process: this module builds its command
line and manages the process by pid; it never imports localstripe.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO

# Where the runner module lives: the child must import `devstack` whatever the caller's cwd.
_PROJECT_ROOT = Path(__file__).resolve().parent.parent


class LocalStripeError(RuntimeError):
    """localstripe did not start (or exited) as expected."""


class LocalStripeServer:
    """localstripe on `host:port`, in memory, as a child process.

    `start()` returns once the port answers; `stop()` sends SIGTERM to that pid and kills it
    if it has not exited after `stop_timeout` seconds. Usable as a context manager.
    """

    def __init__(self, port: int, host: str = "127.0.0.1") -> None:
        self.port = port
        self.host = host
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "devstack.localstripe_main",
            "--port",
            str(self.port),
            "--host",
            self.host,
        ]

    def start(self, timeout: float = 15.0, log_path: Path | None = None) -> None:
        if self._process is not None:
            raise LocalStripeError(f"localstripe already started (pid {self._process.pid})")
        if _port_answers(self.host, self.port):
            raise LocalStripeError(f"{self.host}:{self.port} is already in use")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p
        )
        # Output goes to a file (or nowhere): a pipe nobody reads would block the server.
        self._log = open(log_path, "ab") if log_path is not None else None
        self._process = subprocess.Popen(
            self.command(),
            cwd=_PROJECT_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log or subprocess.DEVNULL,
            stderr=self._log or subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while not _port_answers(self.host, self.port):
            code = self._process.poll()
            if code is not None:
                self._process = None
                self._close_log()
                raise LocalStripeError(f"localstripe exited with code {code} before serving")
            if time.monotonic() > deadline:
                self.stop()
                raise LocalStripeError(f"localstripe did not answer on {self.url} in {timeout}s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    os.kill(process.pid, signal.SIGKILL)
                    process.wait(timeout=timeout)
        finally:
            self._close_log()

    def __enter__(self) -> LocalStripeServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _port_answers(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.2):
            return True
    except OSError:
        return False


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS considers free right now (there is a race until someone binds it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port
