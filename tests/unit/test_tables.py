"""Issue 26, the trainer's side of real tables: typed columns, preparation inside the graph, regression.

Real torch, real ONNX Runtime on the registered graph, tables generated here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from fermion.compile import compile_variants
from fermion.events import Recipe
from fermion.functions.trainer.tablegraph import table_graphs
from fermion.model_store.features import FeatureSchema
from fermion.training.data import Dataset, load_dataset, split
from fermion.training.errors import DatasetError
from fermion.training.loop import Trained, train
from fermion.training.profile import answers, reference_profile
from fermion.training.tables import encode, graph_inputs


def _mixed(n: int = 3000, seed: int = 0) -> str:
    """Numbers with blanks, an integer, string categories (with blanks), yes/no, an id, free text, a text label."""
    rng = np.random.default_rng(seed)
    tenure = rng.gamma(2.0, 12.0, n)
    calls = rng.integers(0, 10, n)
    plan = rng.choice(["basic", "plus", "pro"], n, p=[0.5, 0.3, 0.2])
    paper = rng.random(n) < 0.4
    score = -0.08 * tenure + 0.35 * calls + np.where(plan == "basic", 1.0, -0.5) + 0.8 * paper
    churn = score + rng.logistic(size=n) * 0.6 > 0.6
    lines = ["customer_id,tenure,calls,plan,paperless,comment,churn"]
    for i in range(n):
        t = "" if i % 11 == 0 else f"{tenure[i]:.2f}"
        p = "" if i % 23 == 0 else str(plan[i])
        paperless, label = "Yes" if paper[i] else "No", "yes" if churn[i] else "no"
        lines.append(f"{1000 + i},{t},{calls[i]},{p},{paperless},said {i}th thing,{label}")
    return "\n".join(lines) + "\n"


def _compiled(ds: Dataset, trained: Trained) -> dict[str, bytes]:
    regression = ds.task == "regression"
    compiled = compile_variants(
        trained.module,
        trained.x_test,
        np.zeros(len(trained.y_test), dtype=np.int64) if regression else trained.y_test,
        calibration=trained.x_calibration,
    )
    table = table_graphs(compiled, trained.module, ds, trained.x_test, trained.y_test, budget=0.01)
    assert table.report["preprocessing_parity"]["max_abs_diff"] <= 1e-6
    return table.files


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Dataset, Trained, dict[str, bytes]]:
    path = tmp_path_factory.mktemp("mixed") / "churn.csv"
    path.write_text(_mixed())
    ds = load_dataset(path, "csv", "churn")
    trained = train(ds, Recipe(label_column="churn"))  # the default recipe
    return path, ds, trained, _compiled(ds, trained)


def test_a_mixed_table_is_typed_and_its_unusable_columns_are_dropped_with_reasons(mixed: tuple) -> None:
    _, ds, _, _ = mixed
    schema: FeatureSchema = ds.schema
    kinds = {c.name: c.kind for c in schema.columns}
    assert kinds == {"tenure": "number", "calls": "integer", "plan": "category", "paperless": "boolean"}
    assert schema.dropped == {"customer_id": "id", "comment": "text or id-like: 3,000 distinct values in 3,000 rows"}
    assert schema.task == "classification" and schema.classes == ["no", "yes"] and schema.label == "churn"
    plan = next(c for c in schema.columns if c.name == "plan")
    assert plan.categories == ["basic", "plus", "pro"] and plan.impute == "basic" and plan.datatype == "BYTES"


def test_a_mixed_table_trains_within_3_points_of_scikit_learn_on_the_same_split(mixed: tuple) -> None:
    pytest.importorskip("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    path, ds, trained, files = mixed
    raw = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    plan = np.asarray([np.nan if v is None else v for v in raw.column("plan").to_pylist()], dtype=object)
    numbers = [np.asarray(raw.column(c).to_numpy(zero_copy_only=False), dtype=np.float64) for c in ("tenure", "calls")]
    paper = np.asarray(raw.column("paperless").to_pylist()) == "Yes"
    x = np.empty((raw.num_rows, 4), dtype=object)
    x[:, 0], x[:, 1], x[:, 2], x[:, 3] = numbers[0], numbers[1], paper.astype(float), plan
    y = np.asarray(raw.column("churn").to_pylist())
    train_idx, test_idx = split(ds, 0.2, 0)
    model = make_pipeline(
        ColumnTransformer(
            [
                ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), [0, 1, 2]),
                (
                    "cat",
                    make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                    [3],
                ),
            ]
        ),
        LogisticRegression(max_iter=1000),
    )
    model.fit(x[train_idx], y[train_idx])
    reference = float((model.predict(x[test_idx]) == y[test_idx]).mean())
    # Ours, as served: ONNX Runtime on the registered graph with the raw held-out columns.
    table = raw.take(pa.array(test_idx))
    session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    probabilities = session.run(["probabilities"], graph_inputs(ds.schema, table))[0]
    ours = float((probabilities.argmax(1) == ds.y[test_idx]).mean())
    assert ours >= reference - 0.03, (ours, reference)
    assert trained.metrics["accuracy"] == pytest.approx(ours, abs=0.005)


def test_the_graph_takes_raw_named_columns_and_matches_the_trainer_to_1e6(mixed: tuple) -> None:
    _, ds, trained, files = mixed
    session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    ins = {i.name: i.type for i in session.get_inputs()}
    assert ins == {
        "tenure": "tensor(float)",
        "calls": "tensor(float)",
        "plan": "tensor(string)",
        "paperless": "tensor(float)",
    }
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities"]
    rows = ds.sample.slice(0, 500)
    feeds = graph_inputs(ds.schema, rows)
    assert np.isnan(feeds["tenure"]).any() and (feeds["plan"] == "").any()  # blanks are in the check
    got = dict(zip(["logits", "probabilities"], session.run(["logits", "probabilities"], feeds), strict=True))
    want = answers(trained.module, ds.schema, encode(ds.schema, rows))
    assert np.abs(got["probabilities"] - want["probabilities"]).max() <= 1e-6
    assert np.all(np.abs(got["logits"] - want["logits"]) <= 1e-6 * np.maximum(1.0, np.abs(want["logits"])))
    np.testing.assert_allclose(got["probabilities"].sum(axis=1), 1.0, atol=1e-5)


def test_an_unseen_category_is_all_zeros_and_a_blank_is_the_most_frequent_value(mixed: tuple) -> None:
    _, _, _, files = mixed
    session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    base = {"tenure": [[np.nan]], "calls": [[3.0]], "paperless": [[1.0]]}

    def logits(plan: str) -> np.ndarray:
        feeds = {k: np.asarray(v, dtype=np.float32) for k, v in base.items()}
        return session.run(["logits"], {**feeds, "plan": np.asarray([[plan]], dtype=object)})[0]

    np.testing.assert_array_equal(logits(""), logits("basic"))  # the mode
    assert not np.array_equal(logits("platinum"), logits("basic"))  # unseen: no category's row at all


def test_the_drift_profile_names_features_by_column(mixed: tuple) -> None:
    _, ds, trained, _ = mixed
    profile = reference_profile(ds, trained)
    assert [f.name for f in profile.features] == ["tenure", "calls", "plan", "paperless"]
    assert len(profile.classes) == 2 and profile.prediction is None


def test_a_table_with_nothing_usable_fails_naming_why(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("id,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(30)))
    with pytest.raises(DatasetError, match=r"no column of the table can be used as a feature .*'id': id"):
        load_dataset(tmp_path / "d.csv", "csv", "label")


def test_diabetes_trains_a_regression_that_beats_predicting_the_mean(tmp_path: Path) -> None:
    datasets = pytest.importorskip("sklearn.datasets")
    bunch = datasets.load_diabetes()
    columns = {name: bunch.data[:, i] for i, name in enumerate(bunch.feature_names)}
    pq.write_table(pa.table({**columns, "progression": bunch.target}), tmp_path / "diabetes.parquet")
    ds = load_dataset(tmp_path / "diabetes.parquet", "parquet", "progression")
    assert ds.task == "regression" and ds.schema.target is not None and ds.labels == []
    trained = train(ds, Recipe(epochs=60, learning_rate=3e-3, label_column="progression"))
    assert set(trained.metrics) == {"mse", "mae", "r2"} and trained.metrics["r2"] > 0.2, trained.metrics
    files = _compiled(ds, trained)
    session = ort.InferenceSession(files["model.onnx"], providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["prediction"]
    _, test_idx = split(ds, 0.2, 0)
    raw = pq.read_table(tmp_path / "diabetes.parquet").take(pa.array(test_idx))
    predicted = session.run(["prediction"], graph_inputs(ds.schema, raw))[0][:, 0]
    y = ds.y[test_idx]
    r2 = 1 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean()) ** 2)
    assert r2 > 0 and r2 == pytest.approx(trained.metrics["r2"], abs=1e-3)  # in the label's units
    profile = reference_profile(ds, trained)
    assert profile.prediction is not None and profile.classes == [] and profile.features[0].name == "age"
    ev = trained.evaluation  # issue 27: a regression's evaluation is its residuals, in the label's units
    assert ev is not None and ev["task"] == "regression" and sum(ev["residuals"]["counts"]) == len(test_idx)
    errors = y - predicted
    assert ev["quantiles"]["p50"] == pytest.approx(float(np.median(errors)), abs=0.05 * float(np.std(y)))
    assert len(ev["pairs"]) == min(200, len(test_idx)) and ev["pairs"][0][0] == pytest.approx(float(y[0]))


def test_task_is_overridable_and_a_regression_on_text_is_refused(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,label\n" + "".join(f"{i},{i % 3}\n" for i in range(30)))
    assert load_dataset(tmp_path / "d.csv", "csv", "label").task == "classification"  # few integers
    assert load_dataset(tmp_path / "d.csv", "csv", "label", task="regression").task == "regression"
    (tmp_path / "t.csv").write_text("a,label\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(30)))
    with pytest.raises(DatasetError, match="regression needs a numeric label"):
        load_dataset(tmp_path / "t.csv", "csv", "label", task="regression")


def test_a_streamed_csv_is_typed_as_a_whole_read_types_it_when_later_blocks_need_wider_types(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The trainer never holds the table: it streams it in blocks typed from the first one. Later blocks
    # widen a column (an integer column gets 2.5, a blank column gets numbers, 0/1 gets "true").
    from fermion.training import tablescan

    rng = np.random.default_rng(3)
    lines = ["count,late,flag,plan,label"]
    for i in range(3000):
        late = f"{rng.normal():.3f}" if i > 2500 else ""
        flag = "true" if i == 2990 else str(i % 2)
        count = "2.5" if i == 2995 else str(i % 7)
        plan = "" if i % 13 == 0 else "abc"[i % 3]
        lines.append(f"{count},{late},{flag},{plan},{'yn'[(i * 7) % 3 == 0]}")
    path = tmp_path / "wide.csv"
    path.write_text("\n".join(lines) + "\n")
    whole = pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(strings_can_be_null=True))
    assert [f.type for f in whole.schema][:3] == [pa.float64(), pa.float64(), pa.bool_()]
    default = load_dataset(path, "csv", "label")
    monkeypatch.setattr(tablescan, "BLOCK_BYTES", 4096)  # many blocks, a narrow first one
    monkeypatch.setattr(tablescan, "GROUP_BYTES", 1)  # one column per fitting pass
    streamed = load_dataset(path, "csv", "label")
    assert streamed.schema is not None and streamed.schema == default.schema
    assert [c.kind for c in streamed.schema.columns] == ["number", "number", "boolean", "category"]
    assert np.array_equal(streamed.x, encode(streamed.schema, whole), equal_nan=True)
    assert np.array_equal(streamed.x, default.x) and np.array_equal(streamed.y, default.y)
