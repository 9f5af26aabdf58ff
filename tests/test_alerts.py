"""The Prometheus alert rules (`deploy/prometheus/alerts.yml`): promtool checks them and runs
their unit tests (`alerts.test.yml`); every alert has a firing test, a runbook section, and
reads only metrics the engine exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import adapters.metrics  # noqa: F401  (registers the engine's metrics)
from config import ROOT

RULES = ROOT / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = ROOT / "deploy" / "prometheus" / "alerts.test.yml"
RUNBOOK = ROOT / "docs" / "runbook.md"
# `make test` puts it there (scripts/install-promtool.sh, from Debian's prometheus package).
LOCAL_PROMTOOL = ROOT / ".venv" / "tools" / "promtool"

# What the operators asked to be alerted on, one alert each.
REQUIRED = {
    "BillingWebhookProcessingFailures",
    "BillingWebhookDeadLettered",
    "BillingWebhookInboxLag",
    "BillingPaymentFailureRate",
    "BillingDunningExhausted",
    "BillingQuotaBlockSpike",
    "BillingUsageReconciliationDrift",
    "BillingStripeApiErrors",
    "BillingNotificationDeadLetters",
    "BillingChurnSpike",
    "BillingStripeDrift",
}


def _promtool() -> str:
    found = str(LOCAL_PROMTOOL) if LOCAL_PROMTOOL.exists() else shutil.which("promtool")
    if found is None:
        pytest.skip(
            "promtool is not installed: `make test` extracts it from Debian's prometheus package"
            " (scripts/install-promtool.sh), which failed on this machine; see its message"
        )
    return found


def _rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"]]


def test_promtool_checks_the_rules() -> None:
    run = subprocess.run(
        [_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_promtool_runs_the_rule_unit_tests() -> None:
    run = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        cwd=RULE_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout


def test_every_required_alert_exists() -> None:
    assert {rule["alert"] for rule in _rules()} >= REQUIRED


def test_every_alert_has_a_firing_unit_test() -> None:
    firing: set[str] = set()
    for case in yaml.safe_load(RULE_TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            if check.get("exp_alerts"):
                firing.add(check["alertname"])
    assert {rule["alert"] for rule in _rules()} - firing == set()


def test_every_alert_links_a_runbook_section() -> None:
    headings = {
        line[3:].strip().lower() for line in RUNBOOK.read_text().splitlines() if line[:3] == "## "
    }
    for rule in _rules():
        anchor = rule["annotations"]["runbook"].partition("#")[2]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in headings, f"docs/runbook.md has no section {rule['alert']}"


def test_alerts_read_only_metrics_the_engine_exports() -> None:
    exported = set()
    for family in REGISTRY.collect():
        exported |= {sample.name for sample in family.samples} | {family.name}
    for rule in _rules():
        used = set(re.findall(r"\bbilling_[a-z_]+", rule["expr"]))
        assert used, rule["alert"]
        # A labelled counter has no sample before its first increment: compare by family name.
        unknown = {name for name in used if name.removesuffix("_total") not in exported}
        assert unknown == set(), f"{rule['alert']} reads {unknown}"
