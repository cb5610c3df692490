"""The layering promises of docs/architecture.md, checked on the code and on a fresh interpreter.

The layer table is read from docs/architecture.md itself ("## Layers"), so the design document and
this test cannot drift apart: a new package, or a new arrow between packages, changes the table.
"""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "architecture.md"
UNITS = sorted(p.name for p in (REPO / "functions").iterdir() if (p / "__init__.py").exists())


@cache
def layer_table() -> dict[str, set[str] | None]:
    """folder → the layers it may import (None: everything), from the doc's "## Layers" table."""
    text = DOC.read_text()
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    table: dict[str, set[str] | None] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`"):
            continue
        folder = cells[0].strip("`").rstrip("/")
        may = cells[-1]
        table[folder] = None if "everything" in may else {m.rstrip("/") for m in re.findall(r"`([a-z_/]+)`", may)}
    return table


def _layer_of(module: str) -> str:
    """`fermion.functions.ingest.app` → `functions/ingest`; `fermion.events.bus` → `events`."""
    parts = module.split(".")
    if parts[0] != "fermion" or len(parts) == 1:
        return "fermion"
    if parts[1] == "functions" and len(parts) > 2:
        return f"functions/{parts[2]}"
    return parts[1] if parts[1] in roots() else "fermion"


@cache
def roots() -> dict[str, str]:
    """package name under fermion → folder, from pyproject.toml's package-dir."""
    dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    return {k.split(".", 1)[1]: v for k, v in dirs.items() if k != "fermion"}


def _module_of(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    head = "fermion" if parts[0] == "fermion" else f"fermion.{parts[0]}"
    rest = parts[1:-1] if parts[-1] == "__init__" else parts[1:]
    return ".".join([head, *rest])


def fermion_imports(path: Path) -> set[str]:
    """Every fermion module a file imports, relative imports resolved, function-local ones included."""
    me = _module_of(path).split(".")
    package = me if path.name == "__init__.py" else me[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.split(".")[0] == "fermion"}


def test_the_table_covers_every_package_and_unit() -> None:
    table = layer_table()
    expected = {"fermion", *roots()} - {"functions"} | {f"functions/{u}" for u in UNITS}
    assert set(table) == expected, (
        f"docs/architecture.md's layer table lists {sorted(table)}; the code has {sorted(expected)}"
    )


@pytest.mark.parametrize("layer", sorted(set(layer_table()) - {"fermion"}))
def test_imports_point_down_the_layers(layer: str) -> None:
    allowed = layer_table()[layer]
    assert allowed is not None
    for path in (REPO / layer).rglob("*.py"):
        if "edge_runner" in path.parts:
            continue  # shipped as source inside bundles: onnxruntime and numpy only
        bad = {_layer_of(m) for m in fermion_imports(path)} - allowed - {layer}
        assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}, which {layer} may not (docs/architecture.md)"


def test_nothing_imports_the_cli_or_client() -> None:
    for folder in roots().values():
        for path in (REPO / folder).rglob("*.py"):
            bad = {m for m in fermion_imports(path) if _layer_of(m) == "fermion"}
            assert not bad, f"{path.relative_to(REPO)} imports {sorted(bad)}: fermion/ is imported by nothing"


def test_units_do_not_import_each_other() -> None:
    for unit in UNITS:
        for path in (REPO / "functions" / unit).rglob("*.py"):
            others = {_layer_of(m) for m in fermion_imports(path)} & {f"functions/{u}" for u in UNITS if u != unit}
            assert not others, f"{path.relative_to(REPO)} reaches into {sorted(others)}"


def test_every_path_the_design_names_exists() -> None:
    folders = "functions|events|model_store|compile|infra|imaging|fermion|tests|scripts|training|service|bench|docs"
    names = set(re.findall(rf"`((?:{folders})/[A-Za-z0-9_./{{}}-]*)`", DOC.read_text()))
    missing = sorted(n for n in names if "{" not in n and not (REPO / n.rstrip("/")).exists())
    assert not missing, f"docs/architecture.md names paths that do not exist: {missing}"


def test_the_inference_function_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "import fermion.functions.inference.app, fermion.functions.inference.handler\n"
        "import fermion.functions.inference.runtime\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'onnxscript'))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_ingest_function_never_imports_torch() -> None:
    """Ingest checks pushed ONNX files with compile/validate.py (onnx) and lists architectures by name."""
    code = (
        "import sys\n"
        "from fermion.functions.ingest.app import create_app\n"
        "import fermion.compile.validate, fermion.training.catalog\n"
        "fermion.training.catalog.architectures()\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'sklearn', 'onnxscript'))\n"
        "assert not heavy, heavy\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_the_lambda_handler_answers_before_importing_the_framework(tmp_path: Path) -> None:
    """Lambda's init + first infer import no FastAPI: it is the other routes' (cold start, issue 16)."""
    code = (
        "import asyncio, sys\n"
        "asyncio.set_event_loop(asyncio.new_event_loop())\n"
        "from fermion.functions.inference.handler import handler\n"
        "event = {'version': '2.0', 'rawPath': '/v2/models/m/infer', 'rawQueryString': '', 'headers': {},\n"
        "         'requestContext': {'http': {'method': 'POST', 'path': '/v2/models/m/infer',\n"
        "                                     'sourceIp': '1.2.3.4'}},\n"
        "         'body': '{}', 'isBase64Encoded': False}\n"
        "out = handler(event, None)\n"
        "assert out['statusCode'] == 401, out\n"  # no key: refused by the core itself
        "framework = sorted(m for m in sys.modules if m.split('.')[0] == 'fastapi')\n"
        "assert not framework, framework\n"
        "print('ok')\n"
    )
    env = {**os.environ, "FERMION_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
