"""The package graph, read from the source: data flows one way and nothing loops back.

infra/ stands alone; models/ knows nothing of stream/ or dashboard/; stream/ nothing of
dashboard/; nothing imports dashboard/. Imports inside functions count too: a lazy import
may save start-up time, never dodge a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("infra", "models", "stream", "dashboard")
FORBIDDEN = {
    "infra": {"models", "stream", "dashboard"},
    "models": {"stream", "dashboard"},
    "stream": {"dashboard"},
    "dashboard": set(),
}


def imported_packages(path: Path) -> set[tuple[str, int]]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {(alias.name.split(".")[0], node.lineno) for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add((node.module.split(".")[0], node.lineno))
    return {(name, line) for name, line in found if name in PACKAGES}


@pytest.mark.parametrize("package", PACKAGES)
def test_package_imports_follow_the_one_way_flow(package: str) -> None:
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / package).rglob("*.py"))
        for name, line in imported_packages(path)
        if name in FORBIDDEN[package]
    ]
    assert not bad, "\n".join(bad)


def test_the_rule_sees_imports_inside_functions(tmp_path: Path) -> None:
    sample = tmp_path / "m.py"
    sample.write_text(
        "def f():\n    from stream.config import Settings\n    import dashboard.app\n"
    )
    assert {name for name, _ in imported_packages(sample)} == {"stream", "dashboard"}


def test_tests_mirror_the_package_and_never_import_each_other() -> None:
    """A test file lives under tests/<package>/ and shares code only through conftest,
    factories, fixtures_db or harness (never by importing another test module)."""
    tests = ROOT / "tests"
    misplaced = [p.name for p in tests.glob("test_*.py") if p.name != "test_architecture.py"]
    assert not misplaced, f"put these under tests/<package>/: {misplaced}"
    crossing = [
        f"{path.relative_to(ROOT)} imports {node.module}"
        for path in sorted(tests.rglob("test_*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and node.module.split(".")[-1].startswith("test_")
    ]
    assert not crossing, "\n".join(crossing)
