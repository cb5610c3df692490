"""The tests' own layout: helpers come from tests/helpers, and tests/conftest.py holds fixtures and hooks only."""

from __future__ import annotations

import ast

from tests.helpers import REPO

TESTS = REPO / "tests"


def _imported_modules(tree: ast.AST) -> list[str]:
    """Every module an `import` or `from ... import` names, with `from tests import conftest` as tests.conftest."""
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
    return names


def test_no_test_file_imports_from_conftest() -> None:
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted(TESTS.rglob("*.py"))
        for name in _imported_modules(ast.parse(path.read_text(), str(path)))
        if name == "conftest" or name.endswith(".conftest") or name.startswith(("conftest.", "tests.conftest."))
    ]
    assert offenders == [], "import helpers from tests.helpers, not from conftest:\n" + "\n".join(offenders)


def _is_fixture(decorator: ast.expr) -> bool:
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Attribute) and target.attr == "fixture"


def test_conftest_defines_only_fixtures_and_hooks() -> None:
    tree = ast.parse((TESTS / "conftest.py").read_text())
    others = [
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
        and not node.name.startswith("pytest_")
        and not any(_is_fixture(d) for d in node.decorator_list)
    ]
    assert others == [], f"helpers belong in tests/helpers, not tests/conftest.py: {others}"
