"""The edge build's child process where torch is not installed: it says so, and the route answers 501."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from fermion.functions.ingest.edge_api import ANSWERS
from fermion.functions.ingest.edge_build import KINDS


def test_without_torch_the_build_names_what_is_missing(tmp_path: Path) -> None:
    code = (
        "import json, sys\n"
        "sys.modules['torch'] = None  # a serving install: importing torch fails\n"
        "from pathlib import Path\n"
        "from fermion.functions.ingest.edge_build import build\n"
        "print(json.dumps(build({'tenant': 'default', 'ref': 'm:1', 'options': {}}, Path(sys.argv[1]))))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "b.tar")], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr[-2000:]
    outcome = json.loads(out.stdout.strip().splitlines()[-1])
    assert outcome["error"] == "missing" and "torch" in outcome["message"], outcome
    assert ANSWERS["missing"].status == 501 and not (tmp_path / "b.tar").exists()


def test_every_outcome_the_child_reports_has_an_answer() -> None:
    assert set(KINDS) == set(ANSWERS)
