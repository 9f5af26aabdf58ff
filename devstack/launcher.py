"""`billing dev`: the whole engine on the embedded stack, with nothing to install or configure.

Starts what is not configured (PostgreSQL unless BILLING_DATABASE_URL, the Temporal dev server
unless BILLING_TEMPORAL_ADDRESS, localstripe unless BILLING_STRIPE_API_KEY), hands the addresses
to the engine's own commands through the environment, then migrates, seeds, and runs the worker
and the API until Ctrl-C.
"""

from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from config import ROOT, Settings
from devstack.localstripe import LocalStripeServer
from devstack.postgres import EmbeddedPostgres
from devstack.processes import ChildSpec, DevStackError, StopRequested, Supervisor, port_is_free
from devstack.temporal import TemporalDevServer

DATABASE = "billing"
# localstripe accepts any secret key that starts with `sk_`.
LOCALSTRIPE_API_KEY = "sk_test_localstripe"
START_TIMEOUT = 60.0
ONE_SHOT_TIMEOUT = 300.0


# Where `billing dev` serves Prometheus metrics unless BILLING_*_METRICS_PORT say otherwise:
# the engine's (API, worker), then the Temporal SDK's (API client, worker).
DEV_METRICS_PORTS = (9101, 9102, 9103, 9104)
# How the stack runs the `billing` commands (migrate, seed, operator-key, worker, api).
BILLING_CLI = (sys.executable, "-m", "cli")


def run_dev(
    settings: Settings,
    time_scale: float | None = None,
    *,
    app_command: Sequence[str] | None = None,
) -> int:
    """Run the stack until SIGINT/SIGTERM/SIGHUP (return 0) or until something fails (return 1).

    `app_command` is the `billing` CLI that runs migrate/seed/operator-key/worker/api; tests pass
    a stand-in.
    """
    supervisor = Supervisor()
    stack = _DevStack(
        settings,
        supervisor,
        time_scale=time_scale,
        app_command=list(app_command or BILLING_CLI),
    )
    code = 0
    # Signals stay handled while the supervisor stops the children: a second Ctrl-C must not
    # abandon them half-stopped.
    with supervisor.handle_signals():
        try:
            stack.start()
            supervisor.wait()
        except StopRequested:
            pass
        except DevStackError as exc:
            supervisor.say(f"error: {exc}")
            code = 1
        finally:
            began = time.monotonic()
            supervisor.stop_all()
            supervisor.say(f"stopped ({time.monotonic() - began:.1f} s)")
    return code


class _DevStack:
    def __init__(
        self,
        settings: Settings,
        supervisor: Supervisor,
        *,
        time_scale: float | None,
        app_command: list[str],
    ) -> None:
        self.settings = settings
        self.supervisor = supervisor
        self.app_command = app_command
        self.env = dict(os.environ, PYTHONUNBUFFERED="1", BILLING_ENVIRONMENT="dev")
        if time_scale is not None:
            self.env["BILLING_TIME_SCALE"] = str(time_scale)
        self.temporal_ui: str | None = None

    def start(self) -> None:
        began = time.monotonic()
        settings = self.settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        self._check_ports_free()
        if settings.database_url is None:
            self.env["BILLING_DATABASE_URL"] = self._start_postgres()
        if settings.temporal_address is None:
            self.env["BILLING_TEMPORAL_ADDRESS"] = self._start_temporal()
        localstripe_url: str | None = None
        if settings.stripe_api_key is None:
            localstripe_url = self._start_localstripe()
            self.env["BILLING_STRIPE_API_KEY"] = LOCALSTRIPE_API_KEY
            self.env["BILLING_STRIPE_API_BASE"] = localstripe_url
            secrets_given = [s.get_secret_value() for s in settings.stripe_webhook_secrets]
            self.env["BILLING_STRIPE_WEBHOOK_SECRETS"] = ",".join(
                [*secrets_given, self._dev_webhook_secret()]
            )
        for variable, port in self._metrics_ports():
            self.env.setdefault(variable, str(port))
        self._run("migrate")
        self._run("seed")
        operator_key = self._run("operator-key", "--if-absent", capture_stdout=True).strip()
        self.supervisor.start(self._app("worker"))
        self.supervisor.start(self._app("api"))
        api = f"http://{settings.api_host}:{settings.api_port}"
        took = self.supervisor.wait_for(
            "api", lambda: _answers_ok(f"{api}/healthz"), timeout=START_TIMEOUT
        )
        self.supervisor.say(f"api ready at {api} ({took:.1f} s)")
        if localstripe_url is not None:
            self._route_localstripe_webhooks(localstripe_url, api)
        self._banner(api, operator_key, time.monotonic() - began)

    def _check_ports_free(self) -> None:
        """Fail before starting anything when a port is taken (often by an earlier run)."""
        s = self.settings
        wanted = [("BILLING_API_PORT", s.api_port), *self._metrics_ports()]
        if s.database_url is None:
            wanted.append(("BILLING_POSTGRES_PORT", s.postgres_port))
        if s.temporal_address is None:
            wanted += [("BILLING_TEMPORAL_PORT", s.temporal_port)]
            wanted += [("BILLING_TEMPORAL_UI_PORT", s.ui_port)]
        if s.stripe_api_key is None:
            wanted.append(("BILLING_LOCALSTRIPE_PORT", s.localstripe_port))
        for variable, port in wanted:
            if not port_is_free(port):
                raise DevStackError(
                    f"port {port} on 127.0.0.1 is in use (is another `billing dev` running?); "
                    f"stop that process or set {variable}"
                )

    def _metrics_ports(self) -> list[tuple[str, int]]:
        """(variable, port) of each metrics endpoint: the settings' or the dev defaults."""
        s = self.settings
        return [
            ("BILLING_API_METRICS_PORT", s.api_metrics_port or DEV_METRICS_PORTS[0]),
            ("BILLING_WORKER_METRICS_PORT", s.worker_metrics_port or DEV_METRICS_PORTS[1]),
            ("BILLING_API_SDK_METRICS_PORT", s.api_sdk_metrics_port or DEV_METRICS_PORTS[2]),
            ("BILLING_WORKER_SDK_METRICS_PORT", s.worker_sdk_metrics_port or DEV_METRICS_PORTS[3]),
        ]

    def _metrics_lines(self) -> list[str]:
        host = self.settings.metrics_host
        api, worker, api_sdk, worker_sdk = (port for _, port in self._metrics_ports())
        return [
            f"  Metrics      http://{host}:{api}/metrics (API), http://{host}:{worker}/metrics"
            " (worker)",
            f"  SDK metrics  http://{host}:{api_sdk}/metrics (API client), "
            f"http://{host}:{worker_sdk}/metrics (worker)",
        ]

    def _start_postgres(self) -> str:
        postgres = EmbeddedPostgres(
            self.settings.data_dir / "postgres", self.settings.postgres_port
        )
        began = time.monotonic()
        if postgres.initdb_if_needed():
            self.supervisor.say(
                f"initialised a new PostgreSQL cluster in {postgres.data_dir} "
                f"({time.monotonic() - began:.1f} s)"
            )
        pid = self.supervisor.start(postgres.child_spec()).pid
        took = self.supervisor.wait_for(
            "postgres", lambda: postgres.is_ready(pid), timeout=START_TIMEOUT
        )
        if postgres.ensure_database(DATABASE):
            self.supervisor.say(f"created database {DATABASE}")
        self.supervisor.say(f"postgres ready on {postgres.host}:{postgres.port} ({took:.1f} s)")
        return postgres.url(DATABASE)

    def _start_temporal(self) -> str:
        temporal = TemporalDevServer(
            self.settings.temporal_port,
            ui_port=self.settings.ui_port,
            db_file=self.settings.data_dir / "temporal.db",
            namespace=self.settings.temporal_namespace,
        )
        self.supervisor.start(temporal.child_spec())
        took = self.supervisor.wait_for("temporal", temporal.is_ready, timeout=START_TIMEOUT)
        created = temporal.ensure_search_attributes()
        if created:
            self.supervisor.say(f"registered search attributes {', '.join(created)}")
        self.temporal_ui = temporal.ui_url
        self.supervisor.say(f"temporal ready on {temporal.address} ({took:.1f} s)")
        return temporal.address

    def _start_localstripe(self) -> str:
        port = self.settings.localstripe_port
        localstripe = LocalStripeServer(port)
        self.supervisor.start(
            ChildSpec("localstripe", localstripe.command(), env=self.env, cwd=ROOT)
        )
        took = self.supervisor.wait_for(
            "localstripe", lambda: _listening(port), timeout=START_TIMEOUT
        )
        self.supervisor.say(f"localstripe ready at {localstripe.url} ({took:.1f} s)")
        return localstripe.url

    def _dev_webhook_secret(self) -> str:
        """The signing secret localstripe signs its webhooks with: made once, kept in the data
        dir, so a second start verifies events signed before it."""
        path = self.settings.data_dir / "localstripe-webhook-secret"
        if not path.exists():
            path.write_text("whsec_" + secrets.token_urlsafe(24))
            path.chmod(0o600)
        return path.read_text().strip()

    def _route_localstripe_webhooks(self, localstripe_url: str, api: str) -> None:
        """Point localstripe's signed webhooks at the engine's endpoint (localstripe keeps this
        in memory, so it is configured on every start)."""
        endpoint = f"{api}/api/billing/webhooks/stripe"
        response = httpx.post(
            f"{localstripe_url}/_config/webhooks/billing-dev",
            data={"url": endpoint, "secret": self._dev_webhook_secret()},
            timeout=5.0,
        )
        if response.status_code != 200:
            raise DevStackError(f"localstripe refused the webhook configuration: {response.text}")
        self.supervisor.say(f"localstripe webhooks -> {endpoint}")

    def _app(self, *args: str) -> ChildSpec:
        return ChildSpec(args[0], [*self.app_command, *args], env=self.env, cwd=ROOT)

    def _run(self, *args: str, capture_stdout: bool = False) -> str:
        began = time.monotonic()
        out = self.supervisor.run_once(
            self._app(*args), timeout=ONE_SHOT_TIMEOUT, capture_stdout=capture_stdout
        )
        self.supervisor.say(f"{args[0]} done ({time.monotonic() - began:.1f} s)")
        return out

    def _banner(self, api: str, operator_key: str, took: float) -> None:
        temporal = self.temporal_ui or f"{self.settings.temporal_address} (external)"
        lines = [
            "",
            f"billing engine is up ({took:.1f} s)",
            f"  API docs     {api}/docs",
            f"  Temporal UI  {temporal}",
            *self._metrics_lines(),
            f"  Data         {_display(self.settings.data_dir)}",
            # What `operator-key --if-absent` said: the new key, or that one was shown before.
            *(f"  {line}" for line in operator_key.splitlines()),
            "Ctrl-C to stop",
            "",
        ]
        self.supervisor.announce("\n".join(lines))


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1.0).close()
    except OSError:
        return False
    return True


def _answers_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def _display(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
