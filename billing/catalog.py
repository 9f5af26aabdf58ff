"""The plan catalog: metrics, plans, prices and per-plan entitlements, read from a TOML file.

The file (``catalog/plans.toml``) is the only place prices, trial lengths, quotas and overage rates
live. It is validated by hand here, so a mistake is reported with the dotted path of the field
(``plans.standard.metrics.llm_tokens.included: ...``) when the engine starts, not as a wrong bill
weeks later.

A `Plan` is what a subscription is sold: `Plan.to_dict()` is its JSON-safe snapshot (copied into
workflow inputs and the ``plans.definition`` column) and `Plan.fingerprint()` identifies that exact
version, so editing a price creates a new version while existing subscribers keep their snapshot.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import TypeGuard, cast

from billing.errors import CatalogError, UnknownMetric, UnknownPlan
from billing.money import is_currency_code

__all__ = [
    "UNLIMITED",
    "Aggregation",
    "CapKind",
    "Catalog",
    "Entitlement",
    "Interval",
    "MetricDefinition",
    "Plan",
    "load_catalog",
    "parse_catalog",
]

# How the file spells an unlimited included quantity (in memory it is `None`).
UNLIMITED = "unlimited"

# Plan and metric codes end up in workflow ids, URLs, search attributes and table rows.
_CODE = re.compile(r"[a-z][a-z0-9_]*")


class Aggregation(StrEnum):
    """How a period's usage events reduce to one billed quantity."""

    SUM = "sum"  # a counter: tokens, executions, calls
    MAX = "max"  # a gauge: the period's peak storage or seats


class CapKind(StrEnum):
    HARD = "hard"  # usage is refused at the included quantity
    SOFT = "soft"  # usage continues (for a grace window) and the excess is billed as overage


class Interval(StrEnum):
    MONTH = "month"
    YEAR = "year"


@dataclass(frozen=True, slots=True)
class MetricDefinition:
    code: str
    aggregation: Aggregation
    unit: str
    description: str


def _is_int(value: object) -> TypeGuard[int]:
    # TOML and JSON booleans arrive as bool, a subclass of int: `included = true` is a mistake.
    return isinstance(value, int) and not isinstance(value, bool)


def _is_non_negative_int(value: object) -> TypeGuard[int]:
    return _is_int(value) and value >= 0


def _is_member(value: object, choices: type[StrEnum]) -> bool:
    # Compare as strings first: a TOML array or table in the field must not reach `in`/hashing.
    return isinstance(value, str) and value in {choice.value for choice in choices}


def _entitlement_problem(
    included: object, cap: object, overage_unit_price: object, overage_unit_size: object
) -> tuple[str, str] | None:
    """The first invariant an entitlement breaks, as (field, problem), or None when valid.

    Shared by the file parser (which reports the dotted path) and `Entitlement.__post_init__`
    (which guards values built in code, e.g. per-tenant overrides).
    """
    if included is not None and not _is_non_negative_int(included):
        return "included", f'must be a non-negative integer or "{UNLIMITED}"'
    if not _is_member(cap, CapKind):
        return "cap", _one_of(CapKind)
    if not _is_non_negative_int(overage_unit_price):
        return "overage_unit_price", "must be a non-negative integer (minor units)"
    if not _is_int(overage_unit_size) or overage_unit_size < 1:
        return "overage_unit_size", "must be a positive integer"
    if cap == CapKind.SOFT and included is None:
        return "cap", f'must be "hard" when included is "{UNLIMITED}" (nothing to go over)'
    if cap == CapKind.HARD and overage_unit_price != 0:
        return "overage_unit_price", 'must be 0 when cap is "hard" (usage never goes over it)'
    return None


@dataclass(frozen=True, slots=True)
class Entitlement:
    """One plan's allowance for one metric.

    `included` is the quantity covered by the base price per period (None: unlimited). Over it, a
    hard cap refuses usage; a soft cap lets it through and bills `overage_unit_price` minor units
    per started block of `overage_unit_size` units.
    """

    metric: str
    included: int | None
    cap: CapKind
    overage_unit_price: int
    overage_unit_size: int

    def __post_init__(self) -> None:
        if not isinstance(self.metric, str) or not _CODE.fullmatch(self.metric):
            raise ValueError(f"Entitlement.metric must be a snake_case code, got {self.metric!r}")
        problem = _entitlement_problem(
            self.included, self.cap, self.overage_unit_price, self.overage_unit_size
        )
        if problem is not None:
            field, message = problem
            raise ValueError(f"Entitlement({self.metric}).{field}: {message}")
        object.__setattr__(self, "cap", CapKind(self.cap))

    @property
    def unlimited(self) -> bool:
        return self.included is None

    def remaining(self, used: int) -> int | None:
        """Quantity still included after `used` (never negative); None when unlimited."""
        _check_used(used)
        if self.included is None:
            return None
        return max(0, self.included - used)

    def overage_units(self, used: int) -> int:
        """Billable blocks of `overage_unit_size` for a period's `used` quantity.

        The quantity over `included` is rounded UP to whole blocks: 1 token over a 1,000-token
        block bills one block. Rounding up is the usual metered-billing rule (a started block is
        owed) and keeps the rule integer-only. Zero when within the quota, unlimited, or hard
        capped (a hard cap refuses usage instead of billing it).
        """
        _check_used(used)
        if self.included is None or self.cap is CapKind.HARD or used <= self.included:
            return 0
        over = used - self.included
        return -(-over // self.overage_unit_size)

    def overage_charge(self, used: int) -> int:
        """Overage in minor units for a period's `used` quantity (see `overage_units`)."""
        return self.overage_units(used) * self.overage_unit_price


def _check_used(used: object) -> None:
    if not _is_int(used):
        raise TypeError(f"used must be an int, got {type(used).__name__}")
    if used < 0:
        raise ValueError(f"used must be non-negative, got {used}")


@dataclass(frozen=True, slots=True)
class Plan:
    """One version of a plan. Build it with `parse_catalog` or `Plan.from_dict`.

    `prices` holds the base price per period in minor units of `currency`, for every `Interval`.
    `entitlements` has one entry per catalog metric, sorted by metric code so that equal plans
    compare equal however their source ordered the metrics (JSONB, for one, reorders keys).
    `prices` is a plain dict rather than a read-only proxy so that a Plan stays serializable by
    Temporal's default data converter; treat it as read-only.
    """

    code: str
    name: str
    currency: str
    trial_days: int
    prices: Mapping[Interval, int]
    entitlements: tuple[Entitlement, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.code, str) or not _CODE.fullmatch(self.code):
            raise ValueError(f"Plan.code must be a snake_case code, got {self.code!r}")
        if not is_currency_code(self.currency):
            raise ValueError(f"Plan({self.code}).currency: not a currency code: {self.currency!r}")
        if not _is_non_negative_int(self.trial_days):
            raise ValueError(f"Plan({self.code}).trial_days: must be a non-negative integer")
        prices = {Interval(interval): amount for interval, amount in self.prices.items()}
        if not all(_is_non_negative_int(amount) for amount in prices.values()):
            raise ValueError(f"Plan({self.code}).prices: must be non-negative integers")
        missing = [interval.value for interval in Interval if interval not in prices]
        if missing:
            raise ValueError(f"Plan({self.code}).prices: missing {', '.join(missing)}")
        entitlements = tuple(sorted(self.entitlements, key=lambda e: e.metric))
        metrics = [e.metric for e in entitlements]
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"Plan({self.code}).entitlements: duplicate metric")
        object.__setattr__(self, "prices", {i: prices[i] for i in Interval})
        object.__setattr__(self, "entitlements", entitlements)

    def price(self, interval: Interval) -> int:
        """Base price per `interval` period, in minor units of `currency`."""
        return self.prices[Interval(interval)]

    def entitlement(self, metric: str) -> Entitlement:
        for entitlement in self.entitlements:
            if entitlement.metric == metric:
                return entitlement
        raise UnknownMetric(metric)

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(e.metric for e in self.entitlements)

    def to_dict(self) -> dict[str, object]:
        """JSON-safe snapshot, in the same shape as a plan table of the catalog file."""
        return {
            "code": self.code,
            "name": self.name,
            "currency": self.currency,
            "trial_days": self.trial_days,
            "prices": {interval.value: amount for interval, amount in self.prices.items()},
            "metrics": {
                e.metric: {
                    "included": UNLIMITED if e.included is None else e.included,
                    "cap": e.cap.value,
                    "overage_unit_price": e.overage_unit_price,
                    "overage_unit_size": e.overage_unit_size,
                }
                for e in self.entitlements
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Plan:
        """Inverse of `to_dict`, validated as strictly as the catalog file (paths start "plan")."""
        table = _table(data, "plan")
        _check_keys(table, "plan", ("code", "currency", *_PLAN_KEYS))
        code = _code(table["code"], "plan.code")
        currency = _currency(table["currency"], "plan.currency")
        return _parse_plan_body(table, "plan", code, currency)

    def fingerprint(self) -> str:
        """sha256 (hex) of the canonical JSON of `to_dict()`: equal plans, equal fingerprints."""
        canonical = json.dumps(
            self.to_dict(), sort_keys=True, separators=(",", ":"), ensure_ascii=False
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class Catalog:
    """Every metric and plan the engine sells, in one currency. Read-only once built."""

    currency: str
    metrics: Mapping[str, MetricDefinition]
    plans: Mapping[str, Plan]
    # Whether a tenant's own `billing.manage` key may add one-off charges to its subscription
    # (ADR 0022); operators always may.
    tenant_charges: bool = False

    def __post_init__(self) -> None:
        # The catalog is shared by the whole process: make accidental mutation impossible.
        object.__setattr__(self, "metrics", MappingProxyType(dict(self.metrics)))
        object.__setattr__(self, "plans", MappingProxyType(dict(self.plans)))

    @property
    def gauge_metrics(self) -> tuple[str, ...]:
        """Metrics aggregated by max (gauges): counters and reconciliation take their peak."""
        return tuple(m.code for m in self.metrics.values() if m.aggregation is Aggregation.MAX)

    def plan(self, code: str) -> Plan:
        try:
            return self.plans[code]
        except KeyError:
            raise UnknownPlan(code) from None

    def metric(self, code: str) -> MetricDefinition:
        try:
            return self.metrics[code]
        except KeyError:
            raise UnknownMetric(code) from None


# --- Parsing -------------------------------------------------------------------------------------

_TOP_KEYS = ("currency", "metrics", "plans")
_OPTIONAL_TOP_KEYS = ("tenant_charges",)
_METRIC_KEYS = ("aggregation", "unit", "description")
_PLAN_KEYS = ("name", "trial_days", "prices", "metrics")
_ENTITLEMENT_KEYS = ("included", "cap", "overage_unit_price", "overage_unit_size")


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _one_of(choices: Iterable[str]) -> str:
    return "must be one of " + ", ".join(f'"{choice}"' for choice in choices)


def _table(value: object, path: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise CatalogError(path or "(top level)", "must be a table")
    return value


def _check_keys(table: Mapping[str, object], path: str, expected: Iterable[str]) -> None:
    expected = tuple(expected)
    for key in table:
        if key not in expected:
            raise CatalogError(
                _join(path, key), f"unknown key (expected one of: {', '.join(sorted(expected))})"
            )
    for key in expected:
        if key not in table:
            raise CatalogError(_join(path, key), "missing")


def _code(value: object, path: str) -> str:
    if not isinstance(value, str) or not _CODE.fullmatch(value):
        raise CatalogError(path, "must be a snake_case code (a-z, 0-9, _; starting with a letter)")
    return value


def _text(value: object, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CatalogError(path, "must be a non-empty string")
    return value


def _non_negative_int(value: object, path: str, what: str = "integer") -> int:
    if not _is_non_negative_int(value):
        raise CatalogError(path, f"must be a non-negative {what}")
    return value


def _currency(value: object, path: str) -> str:
    if not isinstance(value, str) or not is_currency_code(value):
        raise CatalogError(path, 'must be a lower-case ISO 4217 currency code such as "usd"')
    return value


def _parse_metric(code: str, value: object, path: str) -> MetricDefinition:
    table = _table(value, path)
    _check_keys(table, path, _METRIC_KEYS)
    aggregation = table["aggregation"]
    if not isinstance(aggregation, str) or not _is_member(aggregation, Aggregation):
        raise CatalogError(_join(path, "aggregation"), _one_of(Aggregation))
    return MetricDefinition(
        code=code,
        aggregation=Aggregation(aggregation),
        unit=_text(table["unit"], _join(path, "unit")),
        description=_text(table["description"], _join(path, "description")),
    )


def _parse_entitlement(metric: str, value: object, path: str) -> Entitlement:
    table = _table(value, path)
    _check_keys(table, path, _ENTITLEMENT_KEYS)
    raw_included = table["included"]
    included = None if raw_included == UNLIMITED else raw_included
    cap, price, size = table["cap"], table["overage_unit_price"], table["overage_unit_size"]
    problem = _entitlement_problem(included, cap, price, size)
    if problem is not None:
        field, message = problem
        raise CatalogError(_join(path, field), message)
    return Entitlement(
        metric=metric,
        # `_entitlement_problem` has checked these; the casts only tell the type checker so.
        included=cast("int | None", included),
        cap=CapKind(cast(str, cap)),
        overage_unit_price=cast(int, price),
        overage_unit_size=cast(int, size),
    )


def _parse_plan_body(table: Mapping[str, object], path: str, code: str, currency: str) -> Plan:
    name = _text(table["name"], _join(path, "name"))
    trial_days = _non_negative_int(table["trial_days"], _join(path, "trial_days"))

    prices_path = _join(path, "prices")
    prices_table = _table(table["prices"], prices_path)
    _check_keys(prices_table, prices_path, (interval.value for interval in Interval))
    prices = {
        Interval(interval): _non_negative_int(
            amount, _join(prices_path, interval), "integer (minor units per period)"
        )
        for interval, amount in prices_table.items()
    }

    metrics_path = _join(path, "metrics")
    metrics_table = _table(table["metrics"], metrics_path)
    entitlements = tuple(
        _parse_entitlement(
            _code(metric, _join(metrics_path, metric)), value, _join(metrics_path, metric)
        )
        for metric, value in metrics_table.items()
    )
    return Plan(
        code=code,
        name=name,
        currency=currency,
        trial_days=trial_days,
        prices=prices,
        entitlements=entitlements,
    )


def parse_catalog(data: Mapping[str, object]) -> Catalog:
    """Validate a parsed catalog document (the TOML as a mapping) and build the `Catalog`.

    Raises `CatalogError` naming the first bad field by its dotted path.
    """
    top = _table(data, "")
    _check_keys({k: v for k, v in top.items() if k not in _OPTIONAL_TOP_KEYS}, "", _TOP_KEYS)
    currency = _currency(top["currency"], "currency")
    tenant_charges = top.get("tenant_charges", False)
    if not isinstance(tenant_charges, bool):
        raise CatalogError("tenant_charges", "must be true or false")

    metrics_table = _table(top["metrics"], "metrics")
    if not metrics_table:
        raise CatalogError("metrics", "must declare at least one metric")
    metrics = {
        code: _parse_metric(_code(code, _join("metrics", code)), value, _join("metrics", code))
        for code, value in metrics_table.items()
    }

    plans_table = _table(top["plans"], "plans")
    if not plans_table:
        raise CatalogError("plans", "must declare at least one plan")
    plans: dict[str, Plan] = {}
    for code, value in plans_table.items():
        path = _join("plans", code)
        _code(code, path)
        table = _table(value, path)
        _check_keys(table, path, _PLAN_KEYS)
        metrics_path = _join(path, "metrics")
        # Cross-check against [metrics] before parsing entitlements, so a typo in a metric name
        # is reported as such rather than as a problem inside its table.
        declared = _table(table["metrics"], metrics_path)
        for metric in declared:
            if metric not in metrics:
                raise CatalogError(_join(metrics_path, metric), "not declared in [metrics]")
        for metric in metrics:
            if metric not in declared:
                raise CatalogError(
                    _join(metrics_path, metric), "missing (every plan must define every metric)"
                )
        plans[code] = _parse_plan_body(table, path, code, currency)

    return Catalog(currency=currency, metrics=metrics, plans=plans, tenant_charges=tenant_charges)


def load_catalog(path: Path) -> Catalog:
    """Read and validate the catalog file; every failure is a `CatalogError` naming the file."""
    source = str(path)
    try:
        with path.open("rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise CatalogError(
            "", f"cannot read the catalog: {exc.strerror or exc}", source=source
        ) from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CatalogError("", f"invalid TOML: {exc}", source=source) from exc
    try:
        return parse_catalog(data)
    except CatalogError as exc:
        raise CatalogError(exc.path, exc.problem, source=source) from None
