"""serverless.yml resolves offline with the Serverless Framework v3."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("npx") is None, reason="needs Node.js (npx) for the Serverless Framework")
def test_serverless_print_resolves_both_http_functions() -> None:
    out = subprocess.run(
        ["npx", "--yes", "serverless@3", "print", "--format", "json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    import json

    config = json.loads(out.stdout[out.stdout.index("{") :])
    functions = config["functions"]
    assert functions["inference"]["image"]["command"] == ["fermion.functions.inference.handler.handler"]
    assert functions["ingest"]["image"]["command"] == ["fermion.functions.ingest.handler.handler"]
    assert config["provider"]["runtime"] == "python3.11"
