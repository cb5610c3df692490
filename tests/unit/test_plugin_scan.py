"""The inference function's cold start skips pydantic's search for plugins (functions/inference/__init__.py).

Each test installs a real pydantic plugin (a distribution on PYTHONPATH whose entry point is in the
`pydantic` group, as a plugin package declares it) and starts the Lambda handler or the container
entry point in a fresh interpreter: the plugin's module is imported only if pydantic searched.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PLUGIN = """
class Plugin:
    def new_schema_validator(self, schema, schema_type, schema_type_path, schema_kind, config, plugin_settings):
        return None, None, None

plugin = Plugin()
"""

LAMBDA = "from fermion.functions.inference.handler import handler\n"
ENTRY_POINT = (
    "from fermion.functions.inference import servers\n"
    "from fermion.functions.inference.__main__ import main\n"
    "servers.run_uvicorn = lambda *args, **kwargs: None  # imported, settings read, app built: stop there\n"
    "main(['--port', '0'])\n"
)
REPORT = (
    "import os, sys\n"
    "from fermion.functions.inference.settings import get_settings\n"
    "get_settings()  # the settings read, in case the start-up had not: their import builds its models\n"
    "print('searched' if 'probe_plugin' in sys.modules else 'skipped', os.environ.get('PYDANTIC_DISABLE_PLUGINS'))\n"
)


@pytest.fixture
def plugged(tmp_path: Path) -> dict[str, str]:
    """An environment where a pydantic plugin is installed (and no choice about plugins is made)."""
    (tmp_path / "probe_plugin.py").write_text(PLUGIN)
    info = tmp_path / "probe_plugin-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: probe-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[pydantic]\nprobe = probe_plugin:plugin\n")
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    return {**env, "PYTHONPATH": str(tmp_path), "FERMION_HOME": str(tmp_path / "home")}


def _start(code: str, env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-c", code + REPORT], capture_output=True, text=True, timeout=60, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("start", [LAMBDA, ENTRY_POINT], ids=["lambda-handler", "entry-point"])
def test_the_cold_start_does_not_search_for_pydantic_plugins(plugged: dict[str, str], start: str) -> None:
    assert _start(start, plugged) == "skipped __all__"


@pytest.mark.parametrize("start", [LAMBDA, ENTRY_POINT], ids=["lambda-handler", "entry-point"])
def test_the_environment_can_ask_for_plugins(plugged: dict[str, str], start: str) -> None:
    """PYDANTIC_DISABLE_PLUGINS set, even empty, is the operator's choice: an empty one loads them all."""
    assert _start(start, {**plugged, "PYDANTIC_DISABLE_PLUGINS": ""}) == "searched"


def test_other_processes_still_load_plugins(plugged: dict[str, str]) -> None:
    """Only the inference function's start-up skips them: importing its modules elsewhere does not."""
    assert _start("import fermion.functions.inference.app\n", plugged) == "searched None"
