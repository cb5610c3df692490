"""The layering promises of ARCHITECTURE.md, checked on the code and on a fresh interpreter."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# What each layer may import of ours (fermion.<layer>); imports point down, never up or sideways.
ALLOWED = {
    "events": set(),
    "model_store": set(),
    "compile": set(),
    "imaging": {"events"},
    "infra": {"events", "model_store"},
    "service": {"events", "model_store"},
    "training": {"events", "model_store", "imaging"},
    "functions/inference": {"service", "model_store", "events", "imaging"},
    # compile.validate (onnx, no torch) for pushed files; training.catalog (names, no torch)
    "functions/ingest": {"service", "model_store", "events", "imaging", "compile", "training"},
    "functions/trainer": {"service", "training", "compile", "model_store", "events", "imaging"},
    "functions/monitor": {"service", "model_store", "events"},
    "functions/federated": {"service", "training", "compile", "model_store", "events"},
}


def _fermion_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [node.module or ""] if isinstance(node, ast.ImportFrom) and node.level == 0 else []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "fermion" and len(parts) > 1:
                found.add(parts[1] if parts[1] != "functions" or len(parts) < 3 else "functions")
            elif parts[0] == "fermion":
                found.add("fermion")
    return found


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_imports_point_down_the_layers(layer: str) -> None:
    for path in (REPO / layer).rglob("*.py"):
        bad = _fermion_imports(path) - ALLOWED[layer] - {layer}
        assert not bad, f"{path.relative_to(REPO)} imports fermion.{sorted(bad)}, which {layer} may not"


def test_functions_do_not_import_each_other() -> None:
    units = {"inference", "ingest", "trainer", "monitor", "federated"}
    for fn in units:
        for path in (REPO / "functions" / fn).rglob("*.py"):
            text = path.read_text()
            for other in units - {fn}:
                assert f"functions.{other}" not in text and f"from ..{other}" not in text, (
                    f"{path.relative_to(REPO)} reaches into functions/{other}"
                )


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
