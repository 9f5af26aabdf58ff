"""`billing/` is the pure domain: it must not reach for I/O frameworks or the settings.

Two independent checks: a static one (every import statement in every module, relative ones
resolved) and a dynamic one (import every module in a fresh interpreter and look at
`sys.modules`, which also catches an import hidden behind a third-party package or `importlib`).
Each check is itself tested against modules that do break the rule, so it cannot pass vacuously.
"""

from __future__ import annotations

import ast
import importlib
import json
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import billing
from billing.errors import BillingError

ROOT = Path(__file__).resolve().parents[2]
BILLING_DIR = ROOT / "billing"

FORBIDDEN = frozenset(
    {
        "temporalio",
        "sqlalchemy",
        "stripe",
        "httpx",
        "fastapi",
        "starlette",
        "asyncpg",
        "pydantic_settings",
        "config",
    }
)


def _is_forbidden(module: str) -> bool:
    return module.split(".", 1)[0] in FORBIDDEN


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    """Absolute name of `from <level dots><target> import ...` inside `module`."""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    # One dot is the current package; each extra dot goes up one level. Going above the top-level
    # package (which Python refuses at run time) lands on top-level names such as `config`.
    parts = parts[: max(0, len(parts) - (level - 1))]
    if target:
        parts.append(target)
    return ".".join(parts)


def imported_names(source: str, module: str, *, is_package: bool = False) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import `source` makes, including `from x import y`
    as both `x` and `x.y` (y may be a submodule) and `importlib.import_module("x")`."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (
                _resolve_relative(module, is_package, node.level, node.module)
                if node.level
                else node.module or ""
            )
            if base:
                found.append((node.lineno, base))
            found += [
                (node.lineno, f"{base}.{alias.name}" if base else alias.name)
                for alias in node.names
                if alias.name != "*"
            ]
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if (
                name in {"import_module", "__import__"}
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                found.append((node.lineno, node.args[0].value))
    return found


def static_violations(package_dir: Path) -> list[str]:
    violations = []
    for path in sorted(package_dir.rglob("*.py")):
        relative = path.relative_to(package_dir.parent).with_suffix("")
        is_package = relative.name == "__init__"
        module = ".".join(relative.parts[:-1] if is_package else relative.parts)
        for line, name in imported_names(path.read_text(), module, is_package=is_package):
            if _is_forbidden(name):
                violations.append(f"{path.relative_to(package_dir.parent)}:{line} imports {name}")
    return violations


# Imports every module of a package, one at a time, and reports which forbidden top-level modules
# each one pulled into sys.modules. argv: package name, sys.path entry, forbidden names (JSON).
_RUNTIME_PROBE = """
import importlib, json, pkgutil, sys
package, path, forbidden = sys.argv[1], sys.argv[2], set(json.loads(sys.argv[3]))
sys.path.insert(0, path)
def loaded():
    return {name.split(".")[0] for name in sys.modules} & forbidden
preloaded = loaded()
seen, culprits = set(preloaded), {}
root = importlib.import_module(package)
names = [package] + [m.name for m in pkgutil.walk_packages(root.__path__, package + ".")]
for name in names:
    importlib.import_module(name)
    new = loaded() - seen
    if new:
        culprits[name] = sorted(new)
        seen |= new
print(json.dumps({"preloaded": sorted(preloaded), "culprits": culprits}))
"""


def runtime_violations(package: str, path: Path) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, "-c", _RUNTIME_PROBE, package, str(path), json.dumps(sorted(FORBIDDEN))],
        capture_output=True,
        text=True,
        cwd=path,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    result: dict[str, object] = json.loads(completed.stdout)
    return result


# --- the rule, applied to billing/ ----------------------------------------------------------


def test_billing_has_no_forbidden_import_statements() -> None:
    assert static_violations(BILLING_DIR) == []


def test_importing_billing_loads_no_forbidden_module() -> None:
    result = runtime_violations("billing", ROOT)
    # Nothing forbidden may be loaded by the interpreter before billing is imported either,
    # or the check below would not see it.
    assert result == {"preloaded": [], "culprits": {}}


def _billing_modules() -> list[str]:
    return ["billing"] + [m.name for m in pkgutil.walk_packages(billing.__path__, "billing.")]


def test_every_domain_error_has_its_own_snake_case_code() -> None:
    # API error bodies and Temporal ApplicationError types are keyed by `code`: a class that
    # inherits its parent's code, or two classes sharing one, would be indistinguishable.
    for name in _billing_modules():
        importlib.import_module(name)
    classes: list[type[BillingError]] = [BillingError]
    for cls in classes:
        classes += [sub for sub in cls.__subclasses__() if sub not in classes]
    domain = [cls for cls in classes if cls.__module__.startswith("billing.")]
    assert len(domain) >= 8
    problems = [
        f"{cls.__module__}.{cls.__qualname__}: code {cls.code!r}"
        for cls in domain
        if "code" not in vars(cls) or not re.fullmatch(r"[a-z][a-z0-9_]*", cls.code)
    ]
    assert problems == []
    codes = [cls.code for cls in domain]
    assert len(codes) == len(set(codes)), sorted(codes)


# --- the checks themselves catch violations -------------------------------------------------


@pytest.mark.parametrize(
    ("source", "module", "is_package", "flagged"),
    [
        ("import stripe", "billing.money", False, True),
        ("import sqlalchemy.orm as orm", "billing.money", False, True),
        ("from temporalio import workflow", "billing.money", False, True),
        ("from pydantic_settings import BaseSettings", "billing.money", False, True),
        ("import config", "billing.money", False, True),
        ("from config import Settings", "billing.money", False, True),
        ("from .. import config", "billing.money", False, True),
        ("from ..config import Settings", "billing.money", False, True),
        ("from ... import config", "billing.sub.mod", False, True),
        ("from ... import config", "billing.sub", True, True),  # billing/sub/__init__.py
        ("def f():\n    import httpx", "billing.money", False, True),
        ("import importlib\nimportlib.import_module('asyncpg')", "billing.money", False, True),
        ("from starlette.requests import Request", "billing.money", False, True),
        # allowed: the standard library, the domain itself, look-alike names
        ("import configparser", "billing.money", False, False),
        ("from billing import config_rules", "billing.money", False, False),
        ("from . import config", "billing.money", False, False),  # billing.config, a domain module
        ("from .errors import BillingError", "billing.catalog", False, False),
        ("from .. import errors", "billing.sub.mod", False, False),
        ("from .. import config", "billing.sub", True, False),  # billing.config
        ("import pydantic", "billing.money", False, False),
        ("from dataclasses import dataclass", "billing.money", False, False),
    ],
)
def test_static_check_flags_forbidden_imports(
    source: str, module: str, is_package: bool, flagged: bool
) -> None:
    names = [name for _, name in imported_names(source, module, is_package=is_package)]
    assert any(_is_forbidden(name) for name in names) is flagged, names


def test_checks_catch_a_package_that_breaks_the_rule(tmp_path: Path) -> None:
    package = tmp_path / "impure_domain"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "clean.py").write_text("import json\n")
    (package / "sub" / "__init__.py").write_text("")
    # A module that reaches the forbidden package only indirectly, through importlib.
    (package / "sub" / "sneaky.py").write_text(
        "import importlib\n_m = importlib.import_module('asyncpg')\n"
    )
    (package / "direct.py").write_text("from ..config import Settings\n")

    assert static_violations(package) == [
        "impure_domain/direct.py:1 imports config",
        "impure_domain/direct.py:1 imports config.Settings",
        "impure_domain/sub/sneaky.py:2 imports asyncpg",
    ]
    (package / "direct.py").unlink()  # it cannot even be imported: beyond the top-level package
    result = runtime_violations("impure_domain", tmp_path)
    assert result["culprits"] == {"impure_domain.sub.sneaky": ["asyncpg"]}
