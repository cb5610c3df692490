"""Classic models as first-class versions, through `fermion up`'s real stack and the real CLI.

A trainer fits each classic architecture on an uploaded CSV and registers a signed version with
held-out metrics; a user's scikit-learn pipeline pushed with `--sklearn` answers over OIP v2 exactly
as scikit-learn does (probabilities within 1e-5 on 1,000 rows).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.infra import Stack, StackSettings
from fermion.model_store import StoreSettings, open_registry
from tests.helpers.keys import bearer
from tests.helpers.stack import cli_env

pytestmark = pytest.mark.e2e
pytest.importorskip("skl2onnx")
pytest.importorskip("skops")


def fermion(s: StackSettings, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fermion", *args], env=cli_env(s), capture_output=True, text=True, timeout=timeout
    )


def _rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three overlapping classes in 6 features: probabilities well inside (0, 1), so parity means something."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return (rng.normal(size=(n, 6)) + y[:, None] * 0.8).astype(np.float32), y


def _csv(path: Path, x: np.ndarray, y: np.ndarray | None) -> None:
    header = [f"f{i}" for i in range(x.shape[1])] + (["label"] if y is not None else [])
    body = [
        ",".join([*(repr(float(v)) for v in row), *([str(int(y[i]))] if y is not None else [])])
        for i, row in enumerate(x)
    ]
    path.write_text("\n".join([",".join(header), *body]) + "\n")


def _infer(stack: Stack, model: str, x: np.ndarray, *, columns: bool = False) -> dict[str, np.ndarray]:
    """The Open Inference Protocol's answer, as any OIP v2 client gets it (a table model: one tensor per column)."""
    body = {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]}
    if columns:
        body = {
            "inputs": [
                {"name": f"f{i}", "shape": [len(x), 1], "datatype": "FP32", "data": x[:, i].tolist()}
                for i in range(x.shape[1])
            ]
        }
    url = f"http://127.0.0.1:{stack.settings.inference_port}/v2/models/{model}/infer"
    answer = httpx.post(url, json=body, headers=bearer(stack.identity.admin_key() or ""), timeout=60)
    assert answer.status_code == 200, answer.text
    return {o["name"]: np.asarray(o["data"]).reshape(o["shape"]) for o in answer.json()["outputs"]}


@pytest.mark.timeout(600)
def test_classic_architectures_train_into_signed_versions(stack: Stack, tmp_path: Path) -> None:
    s = stack.settings
    x, y = _rows(600, 0)
    _csv(tmp_path / "blobs.csv", x, y)
    assert fermion(s, "upload", str(tmp_path / "blobs.csv")).returncode == 0
    listed = fermion(s, "train", "--list").stdout
    registry = open_registry(StoreSettings(home=s.home, store_url=(s.home / "store").as_uri()))
    for n, architecture in enumerate(["sklearn:hist_gradient_boosting", "sklearn:logistic", "xgboost", "lightgbm"]):
        assert architecture in listed
        model = f"blobs-{n}"
        out = fermion(
            s, "train", model, "--dataset", "blobs", "--architecture", architecture, "--epochs", "6", "--follow"
        )
        assert out.returncode == 0, out.stdout + out.stderr
        manifest = registry.manifest("default", model, 1)  # verified against its signature when the stack signs
        assert manifest.metrics["accuracy"] >= 0.6 and 0 < manifest.metrics["macro_f1"] <= 1, manifest.metrics
        assert manifest.compile_report["source"] == "classic"
        assert manifest.compile_report["parity"]["max_abs_diff"] <= 1e-4
        assert manifest.lineage.recipe["architecture"] == architecture and manifest.labels == ["0", "1", "2"]
        assert [o.name for o in manifest.signature.outputs] == ["label", "probabilities", "logits"]
        # A CSV is a table: the columns by name, prepared inside the graph, as torch table models take them.
        assert [i.name for i in manifest.signature.inputs] == [f"f{i}" for i in range(6)] and manifest.features
        assert manifest.compile_report["table_parity"]["max_abs_diff"] <= 1e-4
        signature, _ = registry.store.get(f"models/default/{model}/versions/1/signature.json")  # signed
        assert signature
        served = _infer(stack, model, x[:50], columns=True)
        assert served["probabilities"].shape == (50, 3)
        assert np.mean(served["probabilities"].argmax(axis=1) == y[:50]) >= 0.6
        assert [str(v) for v in served["label"].reshape(-1)] == [str(k) for k in served["probabilities"].argmax(axis=1)]


@pytest.mark.timeout(300)
def test_a_pushed_sklearn_pipeline_answers_as_sklearn_does_over_oip(stack: Stack, tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    s = stack.settings
    x, y = _rows(2000, 1)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(x[:1000], y[:1000])
    sio.dump(pipeline, tmp_path / "pipeline.skops")
    _csv(tmp_path / "rows.csv", x[1000:1200], None)
    out = fermion(
        s,
        "models",
        "push",
        "wpipe",
        "--sklearn",
        str(tmp_path / "pipeline.skops"),
        "--sample",
        str(tmp_path / "rows.csv"),
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "registered wpipe version 1 from pipeline.skops" in out.stdout and "200 rows of rows.csv" in out.stdout

    rows = x[1000:]  # 1,000 rows the pipeline never saw
    served = _infer(stack, "wpipe", rows)
    expected = pipeline.predict_proba(rows)
    assert served["probabilities"].shape == (1000, 3)
    assert np.max(np.abs(served["probabilities"] - expected)) <= 1e-5
    np.testing.assert_array_equal(served["label"].reshape(-1), pipeline.predict(rows))

    manifest = json.loads(fermion(s, "models", "show", "wpipe:1").stdout)
    assert manifest["labels"] == ["0", "1", "2"] and manifest["lineage"]["recipe"]["source"] == "sklearn"
    assert manifest["compile_report"]["parity"]["max_abs_diff"] <= 1e-5

    refused = fermion(s, "models", "push", "wpipe", "--sklearn", str(_untrusted(tmp_path, x, y)))
    assert refused.returncode == 1 and "outside the trusted set" in refused.stderr and "_double" in refused.stderr
    assert len(json.loads(fermion(s, "models", "versions", "wpipe", "-o", "json").stdout)["versions"]) == 1


def _untrusted(tmp: Path, x: np.ndarray, y: np.ndarray) -> Path:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    risky = make_pipeline(FunctionTransformer(_double), LogisticRegression(max_iter=1000)).fit(x[:200], y[:200])
    sio.dump(risky, tmp / "risky.skops")
    return tmp / "risky.skops"


def _double(v: np.ndarray) -> np.ndarray:
    return v * 2
