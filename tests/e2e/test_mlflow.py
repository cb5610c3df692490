"""MLflow both ways against a real `mlflow server` (127.0.0.1, a free port, a temporary backend store).

Out: a trained run exported with `fermion runs export --mlflow` opens in MLflow's client with its
parameters, its per-epoch curves and an ONNX-flavour model. In: `fermion models import` registers an
MLflow model (that ONNX one, and a scikit-learn pipeline MLflow saved with skops) with its run's metrics;
a pickled scikit-learn model is refused.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.infra import Stack, StackSettings
from tests.helpers import free_port
from tests.helpers.stack import cli_env

pytestmark = pytest.mark.e2e
mlflow = pytest.importorskip("mlflow")
pytest.importorskip("skl2onnx")


@pytest.fixture(scope="module")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MLflow tracking server with artifact serving; stopped (its whole process group) after."""
    home = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += [
        "--backend-store-uri",
        f"sqlite:///{home / 'mlflow.db'}",
        "--artifacts-destination",
        str(home / "artifacts"),
    ]
    log = (home / "server.log").open("wb")
    server = subprocess.Popen(command, cwd=home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # migrations on a fresh store take a while on a busy machine
        while time.monotonic() < deadline:
            assert server.poll() is None, (home / "server.log").read_text()[-3000:]
            try:
                if httpx.get(f"{uri}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        else:
            pytest.fail(f"mlflow server did not answer in 180 s: {(home / 'server.log').read_text()[-3000:]}")
        yield uri
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server's own group: uvicorn and its workers
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=10)
        log.close()


def fermion(s: StackSettings, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fermion", *args], env=cli_env(s), capture_output=True, text=True, timeout=timeout
    )


def _ok(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _blobs(path: Path, n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 2).astype(np.float32)
    lines = ["a,b,c,d,label", *(",".join([*(f"{v:.5f}" for v in row), str(int(y[i]))]) for i, row in enumerate(x))]
    path.write_text("\n".join(lines) + "\n")
    return x, y


@pytest.mark.timeout(900)  # the stack and the MLflow server start inside the first test's time
def test_a_run_exported_to_mlflow_opens_with_its_params_curves_and_model(
    stack: Stack, tracking: str, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    s = stack.settings
    _blobs(tmp_path / "blobs.csv")
    _ok(fermion(s, "upload", str(tmp_path / "blobs.csv")))
    _ok(fermion(s, "train", "blobs", "--dataset", "blobs", "--epochs", "4", "--learning-rate", "0.01", "--follow"))
    (job,) = [j for j in json.loads(_ok(fermion(s, "jobs", "list", "-o", "json"))) if j["model_name"] == "blobs"]

    said = _ok(fermion(s, "runs", "export", "--mlflow", tracking, "--run", job["job_id"]))
    run_id = said.split("MLflow run ")[1].split()[0]
    tracker = MlflowClient(tracking_uri=tracking)
    run = tracker.get_run(run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == job["job_id"]
    assert tracker.get_experiment(run.info.experiment_id).name == "fermion/blobs"
    assert run.data.params["epochs"] == "4" and run.data.params["learning_rate"] == "0.01"
    assert run.data.params["architecture"] == "mlp" and run.data.tags["fermion.version"] == "1"
    for key in ("loss", "accuracy", "macro_f1"):
        history = tracker.get_metric_history(run_id, key)
        assert [m.step for m in history] == [1, 2, 3, 4], (key, history)
    losses = [m.value for m in tracker.get_metric_history(run_id, "loss")]
    assert losses[-1] < losses[0]  # the curve, not one number four times

    # The graph went as an ONNX-flavour model, and comes back in as the next version with the run's metrics.
    imported = _ok(
        fermion(s, "models", "import", "copy", f"mlflow:runs:/{run_id}/model", "--tracking-uri", tracking,
                "--labels", "0,1,2", "-o", "json")
    )  # fmt: skip
    out = json.loads(imported)
    assert out["flavor"] == "onnx" and out["version"] == 1
    original = json.loads(_ok(fermion(s, "models", "show", "blobs:1")))
    copy = json.loads(_ok(fermion(s, "models", "show", "copy:1")))
    assert copy["files"]["model.onnx"]["sha256"] == original["files"]["model.onnx"]["sha256"]
    assert copy["metrics"]["accuracy"] == pytest.approx(original["metrics"]["accuracy"])
    assert copy["lineage"]["recipe"]["source"] == "mlflow" and copy["lineage"]["recipe"]["run_id"] == run_id

    again = _ok(fermion(s, "runs", "export", "--mlflow", tracking, "--model", "copy"))  # a pushed version: no run
    pushed = tracker.get_run(again.split("MLflow run ")[1].split()[0])
    assert pushed.data.metrics["accuracy"] == pytest.approx(original["metrics"]["accuracy"])


@pytest.mark.timeout(900)
@pytest.mark.filterwarnings("ignore::UserWarning")  # MLflow's own advice on type hints while it logs the pipeline
def test_a_scikit_learn_model_from_mlflow_becomes_a_version_with_its_metrics(
    stack: Stack, tracking: str, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = stack.settings
    x, y = _blobs(tmp_path / "rows.csv")
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(x, y)
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment("users-own")
    with mlflow.start_run() as run:
        mlflow.log_metric("accuracy", 0.93)
        mlflow.log_metric("macro_f1", 0.92)
        mlflow.sklearn.log_model(pipeline, name="model", serialization_format="skops")
        mlflow.sklearn.log_model(pipeline, name="pickled", serialization_format="cloudpickle")
    source = f"mlflow:runs:/{run.info.run_id}/model"
    said = _ok(fermion(s, "models", "import", "skl", source, "--tracking-uri", tracking))
    assert "registered skl version 1" in said and "sklearn flavour" in said and "accuracy 0.9300" in said
    manifest = json.loads(_ok(fermion(s, "models", "show", "skl:1")))
    assert manifest["metrics"] == {"accuracy": 0.93, "macro_f1": 0.92} and manifest["labels"] == ["0", "1", "2"]
    assert (
        manifest["compile_report"]["flavor"] == "sklearn"
        and manifest["compile_report"]["parity"]["max_abs_diff"] <= 1e-5
    )

    refused = fermion(
        s, "models", "import", "skl", f"mlflow:runs:/{run.info.run_id}/pickled", "--tracking-uri", tracking
    )
    assert refused.returncode == 1 and "cloudpickle" in refused.stderr and "skops" in refused.stderr, refused.stderr
