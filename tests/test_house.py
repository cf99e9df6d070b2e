"""The house's import rules: the core at the bottom, the SDK, the worker and Grafana tooling on it,
each apart from the others, and the CLI composing them all (docs/architecture.md)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {
    "runstream_core": REPO / "schemas" / "runstream_core",
    "runstream": REPO / "producer" / "runstream",
    "runstream_worker": REPO / "stream" / "runstream_worker",
    "runstream_grafana": REPO / "deploy" / "grafana" / "runstream_grafana",
    "runstream_cli": REPO / "producer" / "runstream_cli",
}
ALLOWED = {
    "runstream_core": set(),
    "runstream": {"runstream_core"},
    "runstream_worker": {"runstream_core"},
    "runstream_grafana": {"runstream_core"},
    "runstream_cli": {"runstream_core", "runstream", "runstream_worker", "runstream_grafana"},
}


def imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module.split(".")[0])
    return found & set(PACKAGES)


@pytest.mark.parametrize("package", sorted(PACKAGES))
def test_each_package_imports_only_what_lies_below_it(package: str) -> None:
    wrong = {
        f"{path.relative_to(REPO)} imports {other}"
        for path in PACKAGES[package].rglob("*.py")
        for other in imported_packages(path) - {package} - ALLOWED[package]
    }
    assert sorted(wrong) == []


def test_no_test_helper_lives_in_a_production_package() -> None:
    """Emulators and fixtures live in tests/: nothing shipped is there only for the tests."""
    shipped = {path.stem for root in PACKAGES.values() for path in root.rglob("*.py")}
    assert not shipped & {"macros", "fixtures", "fake", "fakes", "emulator", "conftest"}
