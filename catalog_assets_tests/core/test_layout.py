"""The package layout shows its architecture: ``catalog_assets/core`` is plain Python that can be
read, imported and tested without Dagster, and no module grows long without saying why."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORE = ROOT / "catalog_assets" / "core"
FORBIDDEN = ("dagster", "dagster_*", "catalog_assets.defs", "sensors")
MAX_LINES = 400
LENGTH_REASON = re.compile(r"Longer than most modules, on purpose: \w+")
"""What a long module's docstring says, followed by the reason (see ``store/shared.py``)."""


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def core_modules() -> list[str]:
    return sorted(module_name(path) for path in CORE.rglob("*.py"))


def forbidden(name: str) -> bool:
    """Whether importing module ``name`` reaches outside what core may use."""
    if name.startswith("dagster_"):
        return True
    return any(name == root or name.startswith(f"{root}.") for root in FORBIDDEN)


def imported_modules(source: str, module: str, is_package: bool) -> set[str]:
    """Every module an import statement in ``source`` names, relative imports resolved and
    ``from package import name`` counted both as the package and as ``package.name``."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


BLOCKED = ("dagster", "catalog_assets.defs", "sensors")


def import_in_subprocess(
    modules: list[str], blocked: tuple[str, ...] = BLOCKED
) -> subprocess.CompletedProcess[str]:
    """Import ``modules`` in a fresh interpreter where the ``blocked`` packages are unimportable
    (``sys.modules[name] = None`` makes any import of them raise ImportError, however indirect).
    Prints a JSON object: module -> the error importing it raised."""
    script = f"""
import importlib, json, sys
for name in {blocked!r}:
    sys.modules[name] = None
failures = {{}}
for name in {modules!r}:
    try:
        importlib.import_module(name)
    except BaseException as error:
        failures[name] = f"{{type(error).__name__}}: {{error}}"
leaked = sorted(n for n, m in sys.modules.items() if n.startswith("dagster") and m is not None)
if leaked:
    failures["<sys.modules>"] = f"loaded {{leaked[:5]}}"
print(json.dumps(failures))
"""
    return subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def import_failures(modules: list[str], blocked: tuple[str, ...] = BLOCKED) -> dict[str, str]:
    done = import_in_subprocess(modules, blocked)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


# --- core/ without Dagster -----------------------------------------------------------------------


def test_core_has_the_modules_the_layout_names():
    """Guards the checks below against walking an empty or moved folder."""
    modules = set(core_modules())
    expected = {"content", "content_updates", "dead_letters", "discovery", "lookup", "sources"}
    assert {f"catalog_assets.core.{name}" for name in expected} <= modules
    assert {"catalog_assets.core.refresh.queries", "catalog_assets.core.events"} <= modules


def test_every_core_module_imports_without_dagster():
    assert import_failures(core_modules()) == {}


def test_the_import_check_catches_a_module_that_needs_dagster():
    """The check above can fail: the Dagster definitions do not import with Dagster blocked."""
    modules = ["catalog_assets.core.content", "catalog_assets.defs.resources"]
    failures = import_failures(modules, blocked=("dagster",))
    assert list(failures) == ["catalog_assets.defs.resources"]
    assert "import of dagster halted" in failures["catalog_assets.defs.resources"]


def test_no_core_module_names_dagster_the_definitions_or_the_sensors():
    """Static, so it also covers imports inside functions that the import check never runs."""
    found = {}
    for path in sorted(CORE.rglob("*.py")):
        names = imported_modules(
            path.read_text(encoding="utf-8"), module_name(path), path.name == "__init__.py"
        )
        if bad := sorted(name for name in names if forbidden(name)):
            found[str(path.relative_to(ROOT))] = bad
    assert found == {}


@pytest.mark.parametrize(
    ("source", "module", "is_package", "bad"),
    [
        ("import dagster as dg", "catalog_assets.core.x", False, True),
        ("from dagster import asset", "catalog_assets.core.x", False, True),
        ("import dagster_postgres", "catalog_assets.core.x", False, True),
        ("def f():\n    import dagster._core", "catalog_assets.core.x", False, True),
        ("from catalog_assets import defs", "catalog_assets.core.x", False, True),
        ("from catalog_assets.defs.resources import X", "catalog_assets.core.x", False, True),
        ("from ..defs import checks", "catalog_assets.core.x", False, True),
        ("from ...defs import checks", "catalog_assets.core.refresh", True, True),
        ("import sensors.replay", "catalog_assets.core.x", False, True),
        ("from sensors import content_events", "catalog_assets.core.x", False, True),
        ("import dagsterish", "catalog_assets.core.x", False, False),
        ("from catalog_assets.store import open_store", "catalog_assets.core.x", False, False),
        ("from . import content", "catalog_assets.core.x", False, False),
        ("from .filters import validate", "catalog_assets.core", True, False),
    ],
)
def test_the_static_check_resolves_every_import_form(source, module, is_package, bad):
    names = imported_modules(source, module, is_package)
    assert any(forbidden(name) for name in names) is bad, names


# --- Module length ----------------------------------------------------------------------------


def long_modules_without_a_reason(roots: list[Path]) -> dict[str, int]:
    """Modules over ``MAX_LINES`` lines whose docstring does not say why, with their length."""
    found = {}
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            lines = len(text.splitlines())
            docstring = ast.get_docstring(ast.parse(text)) or ""
            if lines > MAX_LINES and not LENGTH_REASON.search(" ".join(docstring.split())):
                found[str(path.relative_to(root.parent))] = lines
    return found


def test_no_module_is_long_unless_its_docstring_says_why():
    """Past 400 lines a module usually holds two things; the docstring must argue otherwise."""
    assert long_modules_without_a_reason([ROOT / "catalog_assets", ROOT / "sensors"]) == {}


def test_the_length_check_reads_the_docstring_reason(tmp_path):
    body = "\n".join(f"x{i} = {i}" for i in range(MAX_LINES))
    (tmp_path / "short.py").write_text('"""Short."""\nx = 1\n')
    (tmp_path / "silent.py").write_text(f'"""A long module."""\n{body}\n')
    (tmp_path / "argued.py").write_text(
        f'"""A long module.\n\nLonger than most modules,\non purpose: one table.\n"""\n{body}\n'
    )
    (tmp_path / "no_reason.py").write_text(f'"""Longer than most modules, on purpose."""\n{body}\n')
    found = long_modules_without_a_reason([tmp_path])
    assert {Path(path).name for path in found} == {"silent.py", "no_reason.py"}
