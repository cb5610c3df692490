"""The house's size rules, checked on the code: modules <= 400 lines, functions <= 80, no import cycles.

Cycles are counted between modules from every import the AST holds (function-local and
`TYPE_CHECKING` ones included: a loop through a local import is still a loop). Edges into a
package's `__init__` and out of one are left out: an `__init__` only re-exports, lazily.
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS: dict[str, str] = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
SKIP = ("compile/edge_runner",)  # shipped as source into edge bundles: its own program, not ours
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> Iterator[tuple[str, Path]]:
    """(dotted name, path) of every module under the package roots."""
    for package, folder in ROOTS.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO)
            if any(rel.as_posix().startswith(skip) for skip in SKIP):
                continue
            parts = path.relative_to(REPO / folder).with_suffix("").parts
            yield ".".join([package, *parts]), path


MODULES = dict(_modules())
PACKAGES = {name.removesuffix(".__init__") for name, path in MODULES.items() if path.name == "__init__.py"}


def _target(name: str) -> str | None:
    """The module `name` is, if it is one of ours and not a package (whose `__init__` only re-exports)."""
    return name if name in MODULES and name not in PACKAGES else None


def _imports(name: str, path: Path) -> set[str]:
    """The modules of ours that `name` imports, anywhere in its body."""
    here = name.split(".")[:-1]  # the package a relative import starts from
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(t for a in node.names if (t := _target(a.name)))
        elif isinstance(node, ast.ImportFrom):
            start = here[: len(here) - node.level + 1] if node.level else []
            base = ".".join([*start, node.module or ""]).strip(".")
            for alias in node.names:
                if (t := _target(f"{base}.{alias.name}")) or (t := _target(base)):
                    found.add(t)
    return found - {name}


def _graph() -> dict[str, set[str]]:
    return {
        name: _imports(name, path)
        for name, path in MODULES.items()
        if path.name != "__init__.py" and name not in PACKAGES
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, ())))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        top = stack.pop()
                        on_stack.discard(top)
                        component.append(top)
                        if top == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))
    return out


def test_every_module_fits_in_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in MODULES.values()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by what they hold): {long}"


def test_every_function_fits_in_80_lines() -> None:
    long = {}
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                start = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                if (n := (node.end_lineno or node.lineno) - start + 1) > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_no_import_cycles_between_modules() -> None:
    cycles = _cycles(_graph())
    assert not cycles, f"modules importing each other, directly or round a loop: {cycles}"


def test_the_cycle_finder_sees_a_loop() -> None:
    """The check above can fail: a loop through three modules is found, a chain is not."""
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": set()}) == []


def test_the_graph_reads_relative_imports() -> None:
    """`from . import x` is an edge, and every edge ends at one of our modules."""
    graph = _graph()
    assert "fermion.events.streams" in graph["fermion.events.bus"]
    assert all(target in MODULES for targets in graph.values() for target in targets)
