"""The closed loop of the README, set up and watched with the CLI alone (issue 31).

On `fermion up`'s stack (inference, ingest, trainer, monitor): upload, train and promote version 1,
add a rule `--on drift` whose gate canaries, upload a newer dataset, send a calm window and then a
window with two features shifted through `fermion predict`, and watch `fermion models drift`, the
canary and the rule's last firing. Nothing is written into the store or onto NATS by the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fermion.infra import Stack, StackSettings
from tests.helpers.stack import StackOptions, cli_env

pytestmark = pytest.mark.e2e
N_FEATURES = 8


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    """Telemetry every 0.2 s with every input sampled, and drift judged every 500 rows."""
    return StackOptions(
        env={
            "FERMION_TELEMETRY_INTERVAL_S": "0.2",
            "FERMION_SAMPLE_RATE": "1.0",
            "FERMION_SAMPLE_MAX_ROWS": "100000",
            "FERMION_WINDOW_ROWS": "500",
            "FERMION_TICK_S": "0.2",
            "FERMION_ALIAS_TTL_S": "0.3",
        }
    )


def fermion(s: StackSettings, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(
        [sys.executable, "-m", "fermion", *args], env=cli_env(s), capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def as_json(s: StackSettings, *args: str) -> Any:
    return json.loads(fermion(s, *args, "-o", "json").stdout)


def eventually(what: str, timeout_s: float, probe: Callable[[], Any]) -> Any:
    """`probe()` once it is truthy; a failure naming `what` (and the last answer) after `timeout_s`."""
    deadline, last = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        if last := probe():
            return last
        time.sleep(0.5)
    pytest.fail(f"{what} after {timeout_s:.0f}s; last answer: {last!r}")


def _dataset(path: Path, seed: int) -> Path:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1500, N_FEATURES)).astype(np.float32)
    y = (x[:, :3] @ np.array([[1.0, -1.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.5, 1.0]])).argmax(axis=1)
    np.savez(path, x=x, y=y)
    return path


def _rows(path: Path, seed: int, shift: float) -> Path:
    """One drift window (500 rows) of inputs, features 2 and 5 moved up by `shift` standard deviations."""
    x = np.random.default_rng(seed).normal(size=(500, N_FEATURES)).astype(np.float32)
    x[:, [2, 5]] += shift
    np.save(path, x)
    return path


@pytest.mark.timeout(420)
def test_a_drift_rule_made_with_the_cli_retrains_through_a_canary(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    fermion(s, "upload", str(_dataset(tmp_path / "loopdata-a.npz", seed=1)))
    fermion(s, "train", "loop", "--dataset", "loopdata-a", "--epochs", "3", "--batch-size", "128", "--follow")
    fermion(s, "models", "promote", "loop", "1")

    rule = as_json(
        s,
        *("pipelines", "add", "loop-drift", "--on", "drift", "--prefix", "loopdata", "--model", "loop"),
        *("--epochs", "3", "--batch-size", "128", "--metric", "accuracy", "--no-not-worse"),
        *("--canary", "10,50,100", "--bake", "600"),
    )
    assert (rule["on"], rule["dataset"], rule["dataset_prefix"]) == ("drift", None, "loopdata")
    assert (rule["gate"]["canary"], rule["gate"]["bake_s"]) == ([10, 50, 100], 600)
    listed = fermion(s, "pipelines", "list").stdout
    assert "drift of loop, retrain on newest loopdata*" in listed and "canary 10,50,100% on production" in listed
    assert "never" in listed
    newest = as_json(s, "upload", str(_dataset(tmp_path / "loopdata-b.npz", seed=2)))

    fermion(s, "predict", "loop", "--input", str(_rows(tmp_path / "calm.npy", seed=4, shift=0.0)))
    calm = eventually("a calm window", 60, lambda: as_json(s, "models", "drift", "loop")["windows"])
    assert [(w["version"], w["alarm"], w["features"]) for w in calm] == [(1, False, [])], calm
    assert set(calm[0]["psi"]) == set(calm[0]["ks_pvalue"]) == {f"f{i}" for i in range(N_FEATURES)}

    fermion(s, "predict", "loop", "--input", str(_rows(tmp_path / "moved.npy", seed=5, shift=1.0)))
    alarm = eventually("a drift alarm", 60, lambda: as_json(s, "models", "drift", "loop")["last_alarm"])
    assert alarm["features"] == ["f2", "f5"] and alarm["version"] == 1 and alarm["alarm"], alarm
    shown = fermion(s, "models", "drift", "loop").stdout
    assert "last alarm: v1" in shown and "f2 (PSI" in shown and "moved" in shown, shown

    def canaried() -> Any:
        record = as_json(s, "canary", "status", "loop")["record"]
        return record if record["weights"] == {"1": 90, "2": 10} else None

    record = eventually("version 2 canaried at 10%", 180, canaried)
    assert (record["rollout"]["canary"], record["rollout"]["steps"], record["rollout"]["bake_s"]) == (
        2,
        [10, 50, 100],
        600,
    )
    v2 = as_json(s, "models", "show", "loop:2")
    assert v2["lineage"]["training_event_id"] == "loop-drift.drift.v1"
    assert v2["lineage"]["dataset_sha256"] == newest["sha256"]  # the newest upload matching the prefix
    (listed_rule,) = [r for r in as_json(s, "pipelines", "list") if r["name"] == "loop-drift"]
    fired = listed_rule["last_fired"]
    assert (fired["job_id"], fired["state"], fired["version"]) == ("loop-drift.drift.v1", "completed", 2), fired
