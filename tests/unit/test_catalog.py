"""The plan catalog: the shipped file, validation messages, snapshots and versions."""

from __future__ import annotations

import copy
import json
import pickle
import tomllib
from pathlib import Path
from typing import Any

import pytest

from billing.catalog import (
    Aggregation,
    CapKind,
    Catalog,
    Entitlement,
    Interval,
    Plan,
    load_catalog,
    parse_catalog,
)
from billing.errors import BillingError, CatalogError, UnknownMetric, UnknownPlan

CATALOG_FILE = Path(__file__).resolve().parents[2] / "catalog" / "plans.toml"
METRICS = ("llm_tokens", "agent_executions", "api_calls", "storage_gb", "user_seats")


def shipped_document() -> dict[str, Any]:
    """A fresh, mutable copy of the shipped catalog file as parsed TOML."""
    with CATALOG_FILE.open("rb") as file:
        return tomllib.load(file)


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CATALOG_FILE)


# --- the shipped catalog --------------------------------------------------------------------


def test_shipped_catalog_declares_the_design_metrics(catalog: Catalog) -> None:
    assert catalog.currency == "usd"
    assert {code: m.aggregation for code, m in catalog.metrics.items()} == {
        "llm_tokens": Aggregation.SUM,
        "agent_executions": Aggregation.SUM,
        "api_calls": Aggregation.SUM,
        "storage_gb": Aggregation.MAX,
        "user_seats": Aggregation.MAX,
    }
    assert list(catalog.plans) == ["free", "standard", "enterprise"]


# The domain table of plans and quotas, verbatim (None = unlimited).
DESIGN_QUOTAS = {
    "llm_tokens": (10_000, 1_000_000, 10_000_000),
    "agent_executions": (100, 5_000, 50_000),
    "api_calls": (1_000, 100_000, 1_000_000),
    "storage_gb": (1, 100, 1_000),
    "user_seats": (3, 25, None),
}


@pytest.mark.parametrize(
    ("plan", "metric", "included"),
    [
        (plan, metric, quotas[i])
        for metric, quotas in DESIGN_QUOTAS.items()
        for i, plan in enumerate(("free", "standard", "enterprise"))
    ],
)
def test_shipped_quotas_match_the_design(
    catalog: Catalog, plan: str, metric: str, included: int | None
) -> None:
    assert catalog.plan(plan).entitlement(metric).included == included


@pytest.mark.parametrize(
    ("plan", "month", "year", "trial_days"),
    [("free", 0, 0, 0), ("standard", 4_900, 49_000, 14), ("enterprise", 49_900, 499_000, 14)],
)
def test_shipped_prices_and_trials(
    catalog: Catalog, plan: str, month: int, year: int, trial_days: int
) -> None:
    p = catalog.plan(plan)
    assert (p.price(Interval.MONTH), p.price(Interval.YEAR), p.trial_days) == (
        month,
        year,
        trial_days,
    )
    assert p.currency == "usd"


def test_free_is_hard_capped_everywhere_and_never_billed(catalog: Catalog) -> None:
    free = catalog.plan("free")
    assert {e.cap for e in free.entitlements} == {CapKind.HARD}
    assert all(e.overage_charge(10**12) == 0 for e in free.entitlements)


@pytest.mark.parametrize("plan", ["standard", "enterprise"])
@pytest.mark.parametrize(
    ("metric", "cap", "unit_price", "unit_size"),
    [
        ("llm_tokens", CapKind.SOFT, 2, 1_000),
        ("agent_executions", CapKind.SOFT, 5, 1),
        ("api_calls", CapKind.SOFT, 10, 1_000),
        ("storage_gb", CapKind.SOFT, 25, 1),
        ("user_seats", CapKind.HARD, 0, 1),
    ],
)
def test_paid_plans_overage_rates(
    catalog: Catalog, plan: str, metric: str, cap: CapKind, unit_price: int, unit_size: int
) -> None:
    e = catalog.plan(plan).entitlement(metric)
    assert (e.cap, e.overage_unit_price, e.overage_unit_size) == (cap, unit_price, unit_size)


def test_every_plan_defines_every_metric(catalog: Catalog) -> None:
    for plan in catalog.plans.values():
        assert plan.metrics == tuple(sorted(METRICS))


def test_lookups_raise_typed_errors(catalog: Catalog) -> None:
    with pytest.raises(UnknownPlan) as plan_error:
        catalog.plan("platinum")
    assert plan_error.value.plan_code == "platinum"
    with pytest.raises(UnknownMetric):
        catalog.metric("gpu_hours")
    with pytest.raises(UnknownMetric) as metric_error:
        catalog.plan("standard").entitlement("gpu_hours")
    assert metric_error.value.metric == "gpu_hours"
    assert catalog.metric("storage_gb").unit == "GB"


def test_catalog_cannot_be_mutated(catalog: Catalog) -> None:
    with pytest.raises(TypeError):
        catalog.plans["free"] = catalog.plan("standard")  # type: ignore[index]
    with pytest.raises(AttributeError):
        catalog.currency = "eur"  # type: ignore[misc]


# --- entitlement arithmetic -----------------------------------------------------------------

TOKENS_SOFT = Entitlement("llm_tokens", 1_000_000, CapKind.SOFT, 2, 1_000)
SEATS_HARD = Entitlement("user_seats", 25, CapKind.HARD, 0, 1)
SEATS_UNLIMITED = Entitlement("user_seats", None, CapKind.HARD, 0, 1)
STORAGE_SOFT = Entitlement("storage_gb", 100, CapKind.SOFT, 25, 1)


@pytest.mark.parametrize(
    ("entitlement", "used", "units", "charge"),
    [
        (TOKENS_SOFT, 0, 0, 0),
        (TOKENS_SOFT, 1_000_000, 0, 0),  # exactly the quota: nothing over
        (TOKENS_SOFT, 1_000_001, 1, 2),  # one token over bills a whole started block
        (TOKENS_SOFT, 1_001_000, 1, 2),
        (TOKENS_SOFT, 1_001_001, 2, 4),
        (TOKENS_SOFT, 3_500_000, 2_500, 5_000),
        (STORAGE_SOFT, 130, 30, 750),
        (SEATS_HARD, 40, 0, 0),  # a hard cap refuses usage, it never bills it
        (SEATS_UNLIMITED, 10**9, 0, 0),
    ],
)
def test_overage_rounds_up_to_whole_blocks(
    entitlement: Entitlement, used: int, units: int, charge: int
) -> None:
    assert entitlement.overage_units(used) == units
    assert entitlement.overage_charge(used) == charge


@pytest.mark.parametrize(
    ("entitlement", "used", "remaining"),
    [(TOKENS_SOFT, 0, 1_000_000), (TOKENS_SOFT, 999_999, 1), (SEATS_HARD, 30, 0)]
    + [(SEATS_UNLIMITED, 5, None)],
)
def test_remaining(entitlement: Entitlement, used: int, remaining: int | None) -> None:
    assert entitlement.remaining(used) == remaining


@pytest.mark.parametrize(("used", "error"), [(-1, ValueError), (1.5, TypeError), (True, TypeError)])
def test_used_must_be_a_non_negative_int(used: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        TOKENS_SOFT.overage_charge(used)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"included": -1}, "included"),
        ({"included": None, "cap": CapKind.SOFT}, "cap"),
        ({"cap": "medium"}, "cap"),
        ({"overage_unit_size": 0}, "overage_unit_size"),
        ({"overage_unit_price": -2}, "overage_unit_price"),
        ({"cap": CapKind.HARD, "overage_unit_price": 2}, "overage_unit_price"),
    ],
)
def test_entitlement_built_in_code_is_validated_too(kwargs: dict[str, Any], field: str) -> None:
    # Per-tenant overrides are built in code with dataclasses.replace: the same rules apply.
    fields = {
        "metric": "llm_tokens",
        "included": 1_000,
        "cap": CapKind.SOFT,
        "overage_unit_price": 2,
        "overage_unit_size": 1_000,
    }
    with pytest.raises(ValueError, match=rf"\.{field}:"):
        Entitlement(**{**fields, **kwargs})


# --- snapshots and versions -----------------------------------------------------------------


def _reversed(value: Any) -> Any:
    """Every table with its keys in the opposite order (as JSONB or a hand edit might)."""
    if isinstance(value, dict):
        return {key: _reversed(value[key]) for key in reversed(value)}
    return value


@pytest.mark.parametrize("code", ["free", "standard", "enterprise"])
def test_snapshot_round_trips_through_json(catalog: Catalog, code: str) -> None:
    plan = catalog.plan(code)
    restored = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
    assert restored == plan
    assert restored.fingerprint() == plan.fingerprint()
    # A store that reorders keys (Postgres JSONB does) gives back the same plan.
    assert Plan.from_dict(_reversed(plan.to_dict())) == plan


def test_snapshot_spells_unlimited_like_the_file(catalog: Catalog) -> None:
    snapshot = catalog.plan("enterprise").to_dict()
    assert snapshot["metrics"]["user_seats"]["included"] == "unlimited"  # type: ignore[index]
    assert snapshot["prices"] == {"month": 49_900, "year": 499_000}


def _fingerprints(document: dict[str, Any]) -> dict[str, str]:
    return {code: plan.fingerprint() for code, plan in parse_catalog(document).plans.items()}


def test_fingerprint_ignores_key_order() -> None:
    assert _fingerprints(_reversed(shipped_document())) == _fingerprints(shipped_document())


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("plans", "standard", "prices", "month"), 5_900),
        (("plans", "standard", "prices", "year"), 59_000),
        (("plans", "standard", "trial_days"), 30),
        (("plans", "standard", "metrics", "llm_tokens", "overage_unit_price"), 3),
        (("plans", "standard", "metrics", "api_calls", "included"), 200_000),
    ],
)
def test_fingerprint_changes_when_what_is_sold_changes(path: tuple[str, ...], value: Any) -> None:
    before = _fingerprints(shipped_document())
    after = _fingerprints(_with(shipped_document(), path, value))
    assert after["standard"] != before["standard"]
    # Only the edited plan gets a new version.
    assert (after["free"], after["enterprise"]) == (before["free"], before["enterprise"])


def test_fingerprint_is_sha256_hex(catalog: Catalog) -> None:
    fingerprint = catalog.plan("free").fingerprint()
    assert len(fingerprint) == 64
    assert int(fingerprint, 16) >= 0


@pytest.mark.parametrize(
    ("mutate", "path"),
    [
        (lambda d: d.pop("currency"), "plan.currency"),
        (lambda d: d.update(code="Free Plan"), "plan.code"),
        (lambda d: d.update(tier="gold"), "plan.tier"),
        (lambda d: d["prices"].update(month=-1), "plan.prices.month"),
        (lambda d: d["metrics"]["llm_tokens"].update(cap="firm"), "plan.metrics.llm_tokens.cap"),
    ],
)
def test_from_dict_validates_snapshots(catalog: Catalog, mutate: Any, path: str) -> None:
    snapshot = catalog.plan("free").to_dict()
    mutate(snapshot)
    with pytest.raises(CatalogError) as caught:
        Plan.from_dict(snapshot)
    assert caught.value.path == path


# --- validation: every kind of bad field names its dotted path --------------------------------

DELETE = object()


def _with(document: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    """`document` with the value at `path` replaced (or removed, for DELETE)."""
    document = copy.deepcopy(document)
    parent = document
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def bad(field: str, value: Any, *, reported: str | None = None, id: str) -> Any:
    """A table row: set the dotted `field` to `value` (DELETE removes it); the error must name
    `reported` (by default the field itself)."""
    return pytest.param(tuple(field.split(".")), value, reported or field, id=id)


TOKENS = "plans.standard.metrics.llm_tokens"
GPU_HOURS = {"included": 1, "cap": "hard", "overage_unit_price": 0, "overage_unit_size": 1}
BAD_FIELDS = [
    # wrong values and types (bools and floats are not integers)
    bad(f"{TOKENS}.included", -1, id="negative-included"),
    bad(f"{TOKENS}.included", "lots", id="text-included"),
    bad(f"{TOKENS}.included", True, id="bool-included"),
    bad(f"{TOKENS}.included", 1.5, id="float-included"),
    bad(f"{TOKENS}.cap", "firm", id="unknown-cap"),
    bad(f"{TOKENS}.cap", ["soft"], id="array-cap"),
    bad(f"{TOKENS}.overage_unit_price", -2, id="negative-overage-price"),
    bad(f"{TOKENS}.overage_unit_price", 0.02, id="float-overage-price"),
    bad(f"{TOKENS}.overage_unit_size", 0, id="zero-unit-size"),
    bad("plans.free.metrics.api_calls.overage_unit_price", 10, id="hard-cap-with-overage-price"),
    bad(
        "plans.enterprise.metrics.storage_gb.included",
        "unlimited",
        reported="plans.enterprise.metrics.storage_gb.cap",
        id="soft-cap-unlimited",
    ),
    bad("plans.standard.prices.month", 49.0, id="float-price"),
    bad("plans.standard.prices.month", -4_900, id="negative-price"),
    bad("plans.standard.prices.year", "49000", id="text-price"),
    bad("plans.standard.trial_days", -1, id="negative-trial"),
    bad("plans.standard.trial_days", True, id="bool-trial"),
    bad("plans.standard.name", "", id="empty-name"),
    bad("plans.standard.name", 7, id="int-name"),
    bad("metrics.llm_tokens.aggregation", "avg", id="unknown-aggregation"),
    bad("metrics.llm_tokens.unit", "", id="empty-unit"),
    bad("currency", "USD", id="upper-case-currency"),
    bad("currency", 840, id="numeric-currency"),
    # unknown keys
    bad("version", 2, id="unknown-top-level-key"),
    bad("plans.free.colour", "blue", id="unknown-plan-key"),
    bad("plans.free.prices.week", 0, id="unknown-interval"),
    bad(f"{TOKENS}.overage", 1, id="unknown-entitlement-key"),
    bad("metrics.llm_tokens.scale", 1, id="unknown-metric-key"),
    # missing keys
    bad("currency", DELETE, id="missing-currency"),
    bad("plans.free.name", DELETE, id="missing-name"),
    bad("plans.free.trial_days", DELETE, id="missing-trial"),
    bad("plans.standard.prices.year", DELETE, id="missing-interval"),
    bad(f"{TOKENS}.cap", DELETE, id="missing-cap"),
    bad("metrics.storage_gb.aggregation", DELETE, id="missing-aggregation"),
    # plans against the declared metrics
    bad("plans.free.metrics.gpu_hours", GPU_HOURS, id="undeclared-metric"),
    bad("plans.standard.metrics.user_seats", DELETE, id="plan-missing-a-metric"),
    # shapes
    bad("plans", {}, id="empty-plans"),
    bad("metrics", {}, id="empty-metrics"),
    bad("plans.free", "free", id="plan-not-a-table"),
    bad(TOKENS, 1_000_000, id="entitlement-not-a-table"),
    bad("plans.Pro-Plan", {}, id="plan-code-not-snake-case"),
]


@pytest.mark.parametrize(("path", "value", "dotted"), BAD_FIELDS)
def test_bad_field_is_reported_by_its_dotted_path(
    path: tuple[str, ...], value: Any, dotted: str
) -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_with(shipped_document(), path, value))
    assert caught.value.path == dotted
    assert str(caught.value).startswith(f"{dotted}: ")
    assert caught.value.code == "catalog_error"


def test_included_message_says_what_is_allowed() -> None:
    with pytest.raises(CatalogError) as caught:
        parse_catalog(_with(shipped_document(), (*TOKENS.split("."), "included"), -5))
    assert str(caught.value) == (
        'plans.standard.metrics.llm_tokens.included: must be a non-negative integer or "unlimited"'
    )


def test_load_catalog_names_the_file_for_syntax_errors(tmp_path: Path) -> None:
    bad = tmp_path / "plans.toml"
    bad.write_text('currency = "usd"\n[plans.free\nname = "Free"\n')
    with pytest.raises(CatalogError) as caught:
        load_catalog(bad)
    assert str(bad) in str(caught.value)
    assert "invalid TOML" in str(caught.value)


def test_load_catalog_names_the_file_and_the_field(tmp_path: Path) -> None:
    edited = tmp_path / "plans.toml"
    edited.write_text(CATALOG_FILE.read_text().replace("month = 4_900", "month = 49.00"))
    with pytest.raises(CatalogError) as caught:
        load_catalog(edited)
    assert str(caught.value).startswith(f"{edited}: plans.standard.prices.month: ")
    assert caught.value.source == str(edited)


def test_load_catalog_reports_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(CatalogError, match="cannot read the catalog") as caught:
        load_catalog(missing)
    assert str(missing) in str(caught.value)


@pytest.mark.parametrize(
    "error",
    [
        CatalogError("plans.free.name", "missing", source="plans.toml"),
        UnknownPlan("platinum"),
        UnknownMetric("gpu_hours"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_survive_pickling(error: BillingError) -> None:
    restored = pickle.loads(pickle.dumps(error))
    assert type(restored) is type(error)
    assert str(restored) == str(error)
    assert vars(restored) == vars(error)


def test_tenant_charges_is_optional_and_a_boolean() -> None:
    """ADR 0022: whether tenants' own keys may add one-off charges; the shipped catalog says no,
    a catalog without the key says no, and only true/false are accepted."""
    assert parse_catalog(shipped_document()).tenant_charges is False
    without = shipped_document()
    del without["tenant_charges"]
    assert parse_catalog(without).tenant_charges is False
    assert parse_catalog({**shipped_document(), "tenant_charges": True}).tenant_charges is True
    with pytest.raises(CatalogError, match="tenant_charges"):
        parse_catalog({**shipped_document(), "tenant_charges": "yes"})
    # Allowing tenant charges sells nothing new: no plan gets a new version.
    assert _fingerprints({**shipped_document(), "tenant_charges": True}) == _fingerprints(
        shipped_document()
    )
