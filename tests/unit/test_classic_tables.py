"""Classic models on tables: the torch table models' contract (named columns in, preparation inside the graph).

Each classic architecture trains through the real trainer job on a real CSV or Parquet file in a
local-directory registry, and the registered version is served by the real inference app over ONNX
Runtime: `:predict` by column name, answers within 1e-5 of the estimator the job fitted.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from fermion.compile.classic import to_onnx
from fermion.compile.classic_tables import estimator_answers
from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested
from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.functions.trainer import classic as job
from fermion.model_store import DatasetStore, LocalDirStore, Manifest, Registry
from fermion.training.classic import Fitted
from fermion.training.data import load_dataset, split
from fermion.training.errors import UnknownArchitecture
from fermion.training.tables import encode
from tests.helpers import api_key, bearer

pytest.importorskip("skl2onnx")

CLASSIFIERS = ["sklearn:hist_gradient_boosting", "sklearn:logistic", "xgboost", "lightgbm"]
REGRESSORS = ["sklearn:hist_gradient_boosting", "sklearn:ridge", "xgboost", "lightgbm"]


def _mixed(n: int = 1500, seed: int = 3) -> str:
    """Numbers with blanks, an integer, categories with blanks, yes/no, an id, a three-class text label."""
    rng = np.random.default_rng(seed)
    tenure, calls = rng.gamma(2.0, 12.0, n), rng.integers(0, 10, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    paper = rng.random(n) < 0.4
    score = -0.06 * tenure + 0.3 * calls + np.where(plan == "pro", 1.2, 0.0) + 0.8 * paper + 0.3 * rng.logistic(size=n)
    outcome = np.where(score > 1.8, "churn", np.where(score < 0.2, "upgrade", "stay"))
    lines = ["account_id,tenure,calls,plan,paperless,outcome"]
    for i in range(n):
        t = "" if i % 9 == 0 else f"{tenure[i]:.2f}"
        p = "" if i % 13 == 0 else str(plan[i])
        lines.append(f"{i},{t},{calls[i]},{p},{'Yes' if paper[i] else 'No'},{outcome[i]}")
    return "\n".join(lines) + "\n"


@contextmanager
def _spy() -> Iterator[list[Fitted]]:
    """The estimators the job fits, kept for comparison (the job itself runs unchanged)."""
    seen: list[Fitted] = []
    real = job.fit

    def fit(*args: Any, **kwargs: Any) -> Fitted:
        seen.append(real(*args, **kwargs))
        return seen[-1]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(job, "fit", fit)
        yield seen


def _train(registry: Registry, data: bytes, fmt: str, name: str, recipe: Recipe) -> tuple[Manifest, Fitted]:
    stored = DatasetStore(registry.store).put("default", name, data, fmt)
    ref = DatasetRef(name=name, sha256=stored.sha256, uri=stored.uri, format=fmt, size=stored.size)
    event = TrainingRequested(data=TrainingRequest(model_name=name, dataset=ref, recipe=recipe))
    with _spy() as seen:
        manifest = job.run_classic_job(event, registry, atol=1e-5)
    return manifest, seen[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Each classic architecture trained on the mixed CSV and the diabetes Parquet, and the app serving them."""
    from sklearn.datasets import load_diabetes

    tmp = tmp_path_factory.mktemp("classic-tables")
    registry = Registry(LocalDirStore(tmp / "store"), tmp / "cache")
    (tmp / "mixed.csv").write_text(_mixed())
    bunch = load_diabetes()
    columns = {name: bunch.data[:, i] for i, name in enumerate(bunch.feature_names)}
    pq.write_table(pa.table({**columns, "progression": bunch.target}), tmp / "diabetes.parquet")
    out: dict[str, Any] = {"tmp": tmp, "models": {}}
    for i, architecture in enumerate(CLASSIFIERS):
        recipe = Recipe(architecture=architecture, label_column="outcome", epochs=6)
        out["models"][("mixed", architecture)] = _train(
            registry, (tmp / "mixed.csv").read_bytes(), "csv", f"mixed-{i}", recipe
        )
    for i, architecture in enumerate(REGRESSORS):
        recipe = Recipe(architecture=architecture, label_column="progression", epochs=6)
        out["models"][("diabetes", architecture)] = _train(
            registry, (tmp / "diabetes.parquet").read_bytes(), "parquet", f"diabetes-{i}", recipe
        )
    settings = InferenceSettings(home=tmp / "home", providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    app = create_app(lambda: runtime, lambda: settings)
    out["client"] = TestClient(app, headers=bearer(api_key(registry, "infer")))
    out["registry"] = registry
    yield out


def _held_out(path: Path, fmt: str, label: str) -> pa.Table:
    """The raw held-out rows of the recipe's split (blanks kept), as read from the file."""
    ds = load_dataset(path, fmt, label)
    _, test_idx = split(ds, 0.2, 0)
    if fmt == "parquet":
        return pq.read_table(path).take(pa.array(test_idx))
    raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    return raw.take(pa.array(test_idx))


@pytest.mark.parametrize("architecture", CLASSIFIERS)
def test_a_classic_classifier_on_a_mixed_table_serves_by_column_name_as_it_was_fitted(
    served: dict[str, Any], architecture: str
) -> None:
    manifest, fitted = served["models"][("mixed", architecture)]
    schema = fitted_schema(manifest)
    assert manifest.features is not None and schema.names() == ["tenure", "calls", "plan", "paperless"]
    assert schema.dropped == {"account_id": "id"} and manifest.labels == schema.classes == ["churn", "stay", "upgrade"]
    assert [(t.name, t.datatype, t.shape) for t in manifest.signature.inputs] == [
        ("tenure", "FP32", [-1, 1]),
        ("calls", "FP32", [-1, 1]),
        ("plan", "BYTES", [-1, 1]),
        ("paperless", "FP32", [-1, 1]),
    ]
    assert [t.name for t in manifest.signature.outputs] == ["label", "probabilities", "logits"]
    report = manifest.compile_report
    assert report["parity"]["max_abs_diff"] <= 1e-5 and report["table_parity"]["max_abs_diff"] <= 1e-5, report
    # The held-out evaluation behind the metrics, as a torch model records it (the console draws it).
    evaluation = manifest.evaluation
    assert evaluation is not None and evaluation["labels"] == schema.classes
    cm = np.asarray(evaluation["confusion"])
    assert cm.shape == (3, 3) and cm.sum() == len(fitted.y_test)
    assert np.trace(cm) / cm.sum() == pytest.approx(manifest.metrics["accuracy"])
    assert [c["support"] for c in evaluation["per_class"]] == cm.sum(axis=1).tolist()
    assert manifest.metrics["accuracy"] >= 0.6, manifest.metrics
    assert [f["name"] for f in manifest.profile["features"]] == schema.names()

    # The held-out rows, blanks and all, as people send them: objects keyed by column, any order, label left in.
    held = _held_out(served["tmp"] / "mixed.csv", "csv", "outcome")
    assert held.column("tenure").null_count and held.column("plan").null_count
    rows = held.to_pylist()
    shuffled = []
    for n, row in enumerate(rows):
        keys = list(row)
        random.Random(n).shuffle(keys)
        shuffled.append({k: row[k] for k in keys})
    ordered = [{c: row[c] for c in schema.names()} for row in rows]
    client = served["client"]
    by_name = client.post(f"/v1/models/{manifest.name}:predict", json={"instances": shuffled})
    plain = client.post(f"/v1/models/{manifest.name}:predict", json={"instances": ordered})
    assert by_name.status_code == 200, by_name.text
    assert by_name.json() == plain.json()
    answer = by_name.json()
    expected = estimator_answers(fitted.estimator, encode(schema, held), "classification")
    assert answer["classes"] == schema.classes
    assert np.abs(np.asarray(answer["probabilities"]) - expected).max() <= 1e-5
    assert answer["predictions"] == [schema.classes[k] for k in expected.argmax(axis=1)]

    # OIP v2 clients send one tensor per column, named by it; the label comes back as the class name.
    picked = [i for i, r in enumerate(ordered) if r["tenure"] is not None][:3]  # JSON has no NaN: numbers only
    head = [ordered[i] for i in picked]
    paperless = [float(r["paperless"] == "Yes") for r in head]
    inputs = [
        {"name": "tenure", "shape": [3, 1], "datatype": "FP32", "data": [r["tenure"] for r in head]},
        {"name": "calls", "shape": [3, 1], "datatype": "FP32", "data": [r["calls"] for r in head]},
        {"name": "plan", "shape": [3, 1], "datatype": "BYTES", "data": [r["plan"] or "" for r in head]},
        {"name": "paperless", "shape": [3, 1], "datatype": "FP32", "data": paperless},
    ]
    oip = client.post(f"/v2/models/{manifest.name}/infer", json={"inputs": inputs})
    assert oip.status_code == 200, oip.text
    outputs = {o["name"]: o for o in oip.json()["outputs"]}
    assert outputs["label"]["datatype"] == "BYTES"
    assert outputs["label"]["data"] == [answer["predictions"][i] for i in picked]
    np.testing.assert_allclose(np.reshape(outputs["probabilities"]["data"], (3, 3)), expected[picked], atol=1e-5)

    # Blanks become the training values and an unseen plan no plan at all, inside the graph.
    path = served["registry"].fetch(manifest)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {
        "tenure": np.asarray([[np.nan], [30.0]], np.float32),
        "calls": np.asarray([[4.0], [4.0]], np.float32),
        "plan": np.asarray([[""], ["platinum"]], object),
        "paperless": np.asarray([[np.nan], [1.0]], np.float32),
    }
    label, probabilities, logits = session.run(None, feeds)
    table = pa.table({"tenure": [None, 30.0], "calls": [4, 4], "plan": [None, "platinum"], "paperless": [None, True]})
    np.testing.assert_allclose(probabilities, estimator_answers(fitted.estimator, encode(schema, table), ""), atol=1e-5)
    np.testing.assert_allclose(np.exp(logits), probabilities, atol=1e-6)
    assert label.tolist() == [schema.classes[k] for k in probabilities.argmax(axis=1)]


@pytest.mark.parametrize("architecture", REGRESSORS)
def test_a_classic_regression_on_diabetes_beats_the_mean_and_answers_in_the_labels_units(
    served: dict[str, Any], architecture: str
) -> None:
    manifest, fitted = served["models"][("diabetes", architecture)]
    schema = fitted_schema(manifest)
    assert schema.task == "regression" and manifest.labels == [] and schema.target is not None
    assert set(manifest.metrics) == {"mse", "mae", "r2"} and manifest.metrics["r2"] > 0.2, manifest.metrics
    assert [t.name for t in manifest.signature.outputs] == ["prediction"]
    assert manifest.compile_report["table_parity"]["max_rel_diff"] <= 1e-5, manifest.compile_report
    residuals = manifest.evaluation  # actual - predicted on the held-out split, in the label's units
    assert residuals is not None and residuals["task"] == "regression"
    assert sum(residuals["residuals"]["counts"]) == len(fitted.y_test)
    pairs = np.asarray(residuals["pairs"])  # every held-out row, under the 200 pairs kept
    assert len(pairs) == len(fitted.y_test) and np.mean((pairs[:, 0] - pairs[:, 1]) ** 2) == pytest.approx(
        manifest.metrics["mse"], rel=1e-6
    )

    held = _held_out(served["tmp"] / "diabetes.parquet", "parquet", "progression")
    rows = held.to_pylist()  # the label left in
    r = served["client"].post(f"/v1/models/{manifest.name}:predict", json={"instances": rows})
    assert r.status_code == 200, r.text
    predicted = np.asarray(r.json()["predictions"], dtype=np.float64)
    expected = estimator_answers(fitted.estimator, encode(schema, held), "regression")[:, 0]
    assert np.max(np.abs(predicted - expected) / np.maximum(1.0, np.abs(expected))) <= 1e-5
    y = np.asarray(held.column("progression").to_pylist())
    mse = float(np.mean((predicted - y) ** 2))
    assert mse < float(np.mean((y - y.mean()) ** 2))  # better than always answering the mean
    assert mse == pytest.approx(manifest.metrics["mse"], rel=1e-4)  # in the label's units


def test_the_linear_models_are_one_task_each_and_say_which_to_use(served: dict[str, Any], tmp_path: Path) -> None:
    from fermion.training.classic import fit

    tmp = served["tmp"]
    regression = load_dataset(tmp / "diabetes.parquet", "parquet", "progression")
    with pytest.raises(UnknownArchitecture, match=r"'sklearn:logistic' is for classification.*use 'sklearn:ridge'"):
        fit(regression, Recipe(architecture="sklearn:logistic"))
    classification = load_dataset(tmp / "mixed.csv", "csv", "outcome")
    with pytest.raises(UnknownArchitecture, match=r"'sklearn:ridge' is for regression.*use 'sklearn:logistic'"):
        fit(classification, Recipe(architecture="sklearn:ridge"))


@pytest.mark.parametrize("library", ["lightgbm", "sklearn"])
def test_lightgbm_and_hist_gradient_boosting_thresholds_are_kept_exact_in_float32(library: str) -> None:
    """Rows on adjacent float32 values: the float64 midpoints split between them must not round onto a row's value."""
    values = np.float32(0.37) + np.arange(64, dtype=np.float32) * np.spacing(np.float32(0.37))
    x = np.repeat(values, 40).reshape(-1, 1).astype(np.float32)
    y = (np.arange(len(x)) // 40) % 2  # every other value a class: a split between each pair
    if library == "lightgbm":
        from lightgbm import LGBMClassifier

        model: Any = LGBMClassifier(n_estimators=20, min_child_samples=5, n_jobs=1, verbose=-1)
    else:
        from sklearn.ensemble import HistGradientBoostingClassifier

        model = HistGradientBoostingClassifier(max_iter=20, min_samples_leaf=5)
    model.fit(x, y)
    session = ort.InferenceSession(to_onnx(model, 1), providers=["CPUExecutionProvider"])
    (probabilities,) = session.run(["probabilities"], {"input": x})
    assert np.abs(probabilities - model.predict_proba(x)).max() <= 1e-5


def fitted_schema(manifest: Manifest) -> Any:
    """The manifest's recorded feature schema."""
    from fermion.model_store.features import FeatureSchema

    return FeatureSchema.model_validate(manifest.features)
