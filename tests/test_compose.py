"""The production compose file and Dockerfile, checked as far as possible without a Docker engine:
every image is built here or pinned to a version, every long-running service has a healthcheck,
start-up order only names real services, and no secret is written into the file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"

CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
# A version tag names at least major.minor ("17.6", "1.29.7", "3.11.14-slim-bookworm"); a bare
# major ("17") or "latest" moves under you.
_VERSION_TAG = re.compile(r"v?\d+\.\d+(\.\d+)*([.-][A-Za-z0-9.-]+)?")
# `${NAME:?message}`: compose refuses to start when NAME is unset or empty.
_REQUIRED_VAR = r"\$\{[A-Z][A-Z0-9_]*:\?[^}]*\}"


def is_pinned(image: str) -> bool:
    """True for `name:version` with an explicit version tag, or a digest."""
    if "$" in image:  # an interpolated tag can be anything at deploy time
        return False
    if "@sha256:" in image:
        return True
    name, _, tag = image.rpartition(":")
    # A colon before the last slash is a registry port (`host:5000/img`), not a tag.
    if not name or "/" in tag:
        return False
    return tag != "latest" and _VERSION_TAG.fullmatch(tag) is not None


def load_compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = load_compose()["services"]
    return found


def is_one_shot(service: dict[str, Any]) -> bool:
    # Every service states its restart policy (checked below), so this cannot be an accident.
    return bool(service["restart"] == "no")


def depends_on(service: dict[str, Any]) -> dict[str, Any]:
    value: dict[str, Any] = service.get("depends_on", {})
    return value


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    assert isinstance(env, dict), "use the mapping form of environment"
    return {key: str(value) for key, value in env.items()}


# --- the pin rule itself --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "pinned"),
    [
        ("postgres:17.6", True),
        ("temporalio/auto-setup:1.29.7", True),
        ("python:3.11.14-slim-bookworm", True),
        ("ghcr.io/org/app:v2.3.1", True),
        ("registry:5000/team/app:1.2.0", True),
        ("postgres@sha256:" + "a" * 64, True),
        ("postgres", False),
        ("postgres:latest", False),
        ("postgres:17", False),
        ("python:3-slim", False),
        ("temporalio/ui:${UI_VERSION}", False),
        ("registry:5000/team/app", False),
    ],
)
def test_pin_rule(image: str, pinned: bool) -> None:
    assert is_pinned(image) is pinned


# --- docker-compose.yml ---------------------------------------------------------------------


def test_compose_has_the_production_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"postgres", "temporal", "temporal-ui", "migrate", "api", "worker"} <= set(services)


def test_every_service_is_built_here_or_pinned(services: dict[str, dict[str, Any]]) -> None:
    unpinned = [
        f"{name}: {service.get('image')!r}"
        for name, service in services.items()
        if "build" not in service and not is_pinned(str(service.get("image", "")))
    ]
    assert unpinned == []


def test_every_service_states_its_restart_policy(services: dict[str, dict[str, Any]]) -> None:
    # "no" marks a one-shot job; anything else is long-running and needs a healthcheck.
    assert {name: s.get("restart") for name, s in services.items() if "restart" not in s} == {}


def test_every_long_running_service_has_a_healthcheck(
    services: dict[str, dict[str, Any]],
) -> None:
    long_running = [name for name, service in services.items() if not is_one_shot(service)]
    assert {"postgres", "temporal", "temporal-ui", "api", "worker"} <= set(long_running)
    missing = [
        name
        for name in long_running
        if not (check := services[name].get("healthcheck"))
        or check.get("disable")
        or check.get("test") in (None, [], ["NONE"])
    ]
    assert missing == []


def test_one_shot_jobs_are_not_restarted(services: dict[str, dict[str, Any]]) -> None:
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["command"] == ["migrate"]
    assert "build" in services["migrate"]


def test_depends_on_names_real_services_with_sound_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        needs = service.get("depends_on", {})
        assert isinstance(needs, dict), f"{name}: use depends_on with conditions"
        for dependency, spec in needs.items():
            assert dependency in services, f"{name} depends on unknown service {dependency}"
            condition = spec.get("condition")
            assert condition in CONDITIONS, f"{name} -> {dependency}: condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            if condition == "service_completed_successfully":
                assert is_one_shot(services[dependency]), f"{dependency} never completes"


def test_start_up_order_has_no_cycle(services: dict[str, dict[str, Any]]) -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, " -> ".join((*path, name))
        if name not in done:
            for dependency in depends_on(services[name]):
                visit(dependency, (*path, name))
            done.add(name)

    for name in services:
        visit(name, ())


@pytest.mark.parametrize(
    ("service", "dependency", "condition"),
    [
        ("migrate", "postgres", "service_healthy"),
        ("api", "temporal", "service_healthy"),
        ("worker", "temporal", "service_healthy"),
        ("temporal", "temporal-postgres", "service_healthy"),
    ],
)
def test_start_up_order(
    services: dict[str, dict[str, Any]], service: str, dependency: str, condition: str
) -> None:
    assert depends_on(services[service])[dependency]["condition"] == condition


def _ancestors(services: dict[str, dict[str, Any]], name: str) -> set[str]:
    found: set[str] = set()
    stack = list(depends_on(services[name]))
    while stack:
        dependency = stack.pop()
        if dependency not in found:
            found.add(dependency)
            stack += list(depends_on(services[dependency]))
    return found


@pytest.mark.parametrize("service", ["api", "worker"])
def test_api_and_worker_start_after_migrations(
    services: dict[str, dict[str, Any]], service: str
) -> None:
    assert {"migrate", "postgres", "temporal"} <= _ancestors(services, service)


def test_engine_services_run_in_production_mode(services: dict[str, dict[str, Any]]) -> None:
    engine = {name: s for name, s in services.items() if "build" in s}
    assert {"migrate", "api", "worker"} <= set(engine)
    for name, service in engine.items():
        env = environment(service)
        assert env["BILLING_ENVIRONMENT"] == "production", name
        assert env["BILLING_DATABASE_URL"].startswith("postgresql+asyncpg://"), name
        host, _, port = env["BILLING_TEMPORAL_ADDRESS"].partition(":")
        assert host in services, name
        assert port == "7233", name


def test_api_listens_on_all_interfaces_and_checks_healthz(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert api["command"] == ["api"]
    assert environment(api)["BILLING_API_HOST"] == "0.0.0.0"
    assert "/healthz" in " ".join(api["healthcheck"]["test"])


def test_database_urls_name_the_role_logins(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["api"])
    assert env["BILLING_APP_DATABASE_URL"].startswith("postgresql+asyncpg://billing_app:")
    assert env["BILLING_WORKER_DATABASE_URL"].startswith("postgresql+asyncpg://billing_worker:")


_SECRET_NAME = re.compile(r"PASSWORD|PWD|SECRET|PEPPER|API_KEY")


def test_no_secret_is_written_into_the_file(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment(service).items():
            if "DATABASE_URL" in key:
                # The password part of a URL must come from the environment too.
                assert re.search(rf"://[^:/@]+:{_REQUIRED_VAR}@", value), f"{name}.{key}"
            elif _SECRET_NAME.search(key):
                assert re.fullmatch(_REQUIRED_VAR, value), f"{name}.{key} = {value!r}"
    text = COMPOSE_FILE.read_text()
    assert not re.search(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]+|whsec_[A-Za-z0-9]+", text)


def test_temporal_persists_to_postgres(services: dict[str, dict[str, Any]]) -> None:
    env = environment(services["temporal"])
    assert env["DB"] == "postgres12"
    assert {"DB_PORT", "POSTGRES_USER", "POSTGRES_PWD", "POSTGRES_SEEDS"} <= set(env)
    assert services[env["POSTGRES_SEEDS"]]["image"].startswith("postgres:")


@pytest.mark.parametrize("service", ["api", "worker"])
def test_python_healthchecks_compile(services: dict[str, dict[str, Any]], service: str) -> None:
    test = services[service]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    compile(test[3], f"{service} healthcheck", "exec")


def test_engine_commands_are_cli_subcommands(services: dict[str, dict[str, Any]]) -> None:
    commands = {s["command"][0] for s in services.values() if "build" in s}
    assert {"migrate", "api", "worker"} <= commands
    for command in sorted(commands):
        # `--help` exits 0 only for a subcommand the parser knows, before any settings load.
        completed = subprocess.run(
            [sys.executable, "-c", "import cli; cli.main()", command, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr


def test_search_attributes_job_registers_what_workflows_use(
    services: dict[str, dict[str, Any]],
) -> None:
    from workflows import search_attributes

    flags = search_attributes.cli_flags()
    expected = set(flags[1::2])  # ["--search-attribute", "Name=Type", ...]
    registered = set(
        environment(services["temporal-search-attributes"])["SEARCH_ATTRIBUTES"].split()
    )
    assert registered == expected


# --- Dockerfile -----------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, pending = [], ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        pending += stripped.removesuffix("\\").strip() + " "
        if not stripped.endswith("\\"):
            logical.append(pending.strip())
            pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in logical]


def test_dockerfile_base_images_are_pinned() -> None:
    stages: set[str] = set()
    bases = []
    for instruction, args in _instructions():
        if instruction == "FROM":
            words = [w for w in args.split() if not w.startswith("--")]
            if words[0] not in stages:
                bases.append(words[0])
            if len(words) == 3 and words[1].upper() == "AS":
                stages.add(words[2])
    assert bases
    assert [base for base in bases if not is_pinned(base)] == []
    assert all(base.startswith("python:3.11.") for base in bases)


def test_dockerfile_installs_the_package_and_runs_billing_unprivileged() -> None:
    instructions = _instructions()
    runs = " ".join(args for instruction, args in instructions if instruction == "RUN")
    assert re.search(r"pip install \.(\s|$)", runs), "install the package itself, no extras"
    users = [args for instruction, args in instructions if instruction == "USER"]
    assert users
    assert users[-1].split(":")[0] not in {"root", "0"}
    entrypoints = [args for instruction, args in instructions if instruction == "ENTRYPOINT"]
    assert entrypoints[-1] == '["billing"]'
    # The catalog is data, not package content: the image must ship it and point at it.
    assert any(
        args.startswith("catalog ") for instruction, args in instructions if instruction == "COPY"
    )
    assert "BILLING_CATALOG_PATH=/app/catalog/plans.toml" in " ".join(
        args for instruction, args in instructions if instruction == "ENV"
    )


# --- observability: Prometheus and Grafana ----------------------------------------------------


def _bind_mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    mounts = []
    for volume in service.get("volumes", []):
        source, _, target = str(volume).partition(":")
        if source.startswith("./"):
            mounts.append((source, target.split(":")[0]))
    return mounts


def test_observability_services_are_pinned_and_mount_files_that_exist(
    services: dict[str, dict[str, Any]],
) -> None:
    assert {"prometheus", "grafana"} <= set(services)
    for name in ("prometheus", "grafana"):
        assert is_pinned(services[name]["image"]), name
        mounts = _bind_mounts(services[name])
        assert mounts, name
        for source, _ in mounts:
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"
    for name, service in services.items():
        for source, _ in _bind_mounts(service):
            assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repo"


def test_api_and_worker_share_the_export_directory(services: dict[str, dict[str, Any]]) -> None:
    """The worker writes tenant exports, the API serves them (ADR 0016)."""
    api, worker = environment(services["api"]), environment(services["worker"])
    assert api["BILLING_EXPORT_DIR"] == worker["BILLING_EXPORT_DIR"]
    mount = f"exports:{api['BILLING_EXPORT_DIR']}"
    assert mount in services["api"]["volumes"]
    assert mount in services["worker"]["volumes"]


def test_temporal_runs_with_task_queue_fairness(services: dict[str, dict[str, Any]]) -> None:
    """The engine's fairness keys only count when the server enables fairness (ADR 0014)."""
    temporal = services["temporal"]
    mounts = dict(_bind_mounts(temporal))
    target = mounts["./deploy/temporal/dynamicconfig.yaml"]
    assert target == "/etc/temporal/" + environment(temporal)["DYNAMIC_CONFIG_FILE_PATH"]
    config = yaml.safe_load((ROOT / "deploy/temporal/dynamicconfig.yaml").read_text())
    assert config["matching.enableFairness"] == [{"value": True}]


def test_prometheus_scrapes_the_ports_the_engine_serves_and_loads_the_rules(
    services: dict[str, dict[str, Any]],
) -> None:
    api, worker = environment(services["api"]), environment(services["worker"])
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    targets = {
        target for job in config["scrape_configs"] for sc in job["static_configs"]
        for target in sc["targets"]
    }  # fmt: skip
    assert f"api:{api['BILLING_API_METRICS_PORT']}" in targets
    assert f"worker:{worker['BILLING_WORKER_METRICS_PORT']}" in targets
    assert f"api:{api['BILLING_API_SDK_METRICS_PORT']}" in targets
    assert f"worker:{worker['BILLING_WORKER_SDK_METRICS_PORT']}" in targets
    assert api["BILLING_METRICS_HOST"] == worker["BILLING_METRICS_HOST"] == "0.0.0.0"
    mounted = dict(_bind_mounts(services["prometheus"]))
    assert mounted["./deploy/prometheus/alerts.yml"] in config["rule_files"]
    # Metrics ports stay on the compose network: only the API's own port is published.
    assert services["api"]["ports"] == ["8000:8000"]
    assert "ports" not in services["worker"]


def test_grafana_provisions_the_dashboard_on_the_provisioned_datasource(
    services: dict[str, dict[str, Any]],
) -> None:
    mounted = dict(_bind_mounts(services["grafana"]))
    assert mounted["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/dashboards/billing.yml").read_text()
    )["providers"][0]
    assert mounted["./deploy/grafana/dashboards"] == provider["options"]["path"]
    datasource = yaml.safe_load(
        (ROOT / "deploy/grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"][0]
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/billing.json").read_text())
    panels = [p for p in dashboard["panels"] if p["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        assert panel["targets"], panel["title"]


def test_the_dashboard_reads_only_metrics_the_engine_exports() -> None:
    import adapters.metrics  # noqa: F401  (registers the engine's metrics)

    exported = {family.name for family in REGISTRY.collect()}
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/billing.json").read_text())
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            used = set(re.findall(r"\bbilling_[a-z_]+", target["expr"]))
            assert used, panel["title"]
            unknown = {
                name for name in used
                if re.sub(r"_(total|bucket|count|sum)$", "", name) not in exported
            }  # fmt: skip
            assert unknown == set(), f"{panel['title']} reads {unknown}"
