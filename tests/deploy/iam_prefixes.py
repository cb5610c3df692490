"""What each deployable unit's code can touch in the object store, derived from the code itself.

A unit's modules are the import closure of its entry module inside the fermion namespace (model_store
excluded); the model_store modules it uses are those defining a name its modules mention, with their
own relative imports; a module's key prefixes are the quoted `word/` literals it builds keys from
(`f"datasets/{tenant}/..."`). The result over-approximates (a module reached is not always a call made
on AWS); the IAM tests grant no prefix outside it and explain each one reached but withheld.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {"functions", "service", "training", "events", "compile", "imaging", "infra", "model_store"}
_PREFIX = re.compile(r"f?[\"']([a-z_]+)/")


def _path(module: str) -> Path | None:
    """`fermion.functions.ingest.app` → functions/ingest/app.py (or a package's __init__.py)."""
    parts = module.split(".")
    if parts[0] != "fermion" or len(parts) < 2 or parts[1] not in ROOTS:
        return None
    base = REPO.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.exists():
            return candidate
    return None


def _module(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(["fermion", *parts])


def _imports(path: Path) -> set[str]:
    """Modules `path` imports (absolute, fermion only), each also as its parent package."""
    tree = ast.parse(path.read_text())
    here = _module(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1]) if node.level else ""
            mod = ".".join(p for p in (base, node.module or "") if p)
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return {m for m in out if m.startswith("fermion.")}


@cache
def closure(entry: str) -> frozenset[Path]:
    """The source files `entry` reaches through imports, model_store left out."""
    seen: set[Path] = set()
    todo = [entry]
    while todo:
        path = _path(todo.pop())
        if path is None or path in seen or path.relative_to(REPO).parts[0] == "model_store":
            continue
        seen.add(path)
        todo.extend(_imports(path))
    return frozenset(seen)


@cache
def _store_modules() -> dict[Path, tuple[set[str], set[str]]]:
    """model_store module → (the public names it defines, the prefixes it and its own imports build)."""
    # __init__.py only re-exports (lazily, every module): what a unit names leads to the defining module.
    files = sorted(f for f in (REPO / "model_store").rglob("*.py") if f.name != "__init__.py")
    own = {f: set(_PREFIX.findall(f.read_text())) for f in files}
    names: dict[Path, set[str]] = {}
    for f in files:
        tree = ast.parse(f.read_text())
        defs = {n.name for n in tree.body if isinstance(n, ast.ClassDef | ast.FunctionDef)}
        names[f] = {n for n in defs if not n.startswith("_")}
    out = {}
    for f in files:
        reached, todo = set(), [f]
        while todo:
            g = todo.pop()
            if g in reached:
                continue
            reached.add(g)
            todo.extend(
                p
                for m in _imports(g)
                if (p := _path(m)) is not None and p.is_relative_to(REPO / "model_store") and p.name != "__init__.py"
            )
        out[f] = (names[f], set().union(*(own[g] for g in reached)))
    return out


def key_roots() -> set[str]:
    """Every top-level prefix the code builds keys under: model_store's, and the three units build
    themselves (functions/federated/store.py's rounds, functions/ingest/s3_events.py's drops,
    functions/trainer/predictions.py's scoring outputs, which ingest reads back only under scores/)."""
    return set().union(*(built for _, built in _store_modules().values())) | {"federated", "incoming", "scores"}


def prefixes(entry: str) -> set[str]:
    """Top-level store prefixes (`models`, `keys`, ...) the unit whose entry module is `entry` can touch."""
    found: set[str] = set()
    words: set[str] = set()
    for path in closure(entry):
        text = path.read_text()
        found |= set(_PREFIX.findall(text))
        words |= set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", text))
    for defined, built in _store_modules().values():
        if defined & words:
            found |= built
    return found & key_roots()
