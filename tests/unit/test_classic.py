"""Classic models: fitted on a dataset (training/classic.py), converted and checked (compile/classic.py),
read from a user's skops file with trusted types only (compile/pipeline_file.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from fermion.compile import ParityError
from fermion.compile.classic import OUTPUTS, check_parity, classes_of, to_onnx
from fermion.compile.pipeline_file import UntrustedFile, load_pipeline
from fermion.events import Recipe
from fermion.training.catalog import CLASSIC, architectures
from fermion.training.classic import ESTIMATORS, fit, is_classic
from fermion.training.data import Dataset

pytest.importorskip("skl2onnx")


def _wine() -> Dataset:
    from sklearn.datasets import load_wine

    x, y = load_wine(return_X_y=True)
    return Dataset(x.astype(np.float32), y.astype(np.int64), ["a", "b", "c"])


def test_the_catalog_names_every_classic_estimator_and_recipes_accept_them() -> None:
    assert set(CLASSIC) == set(ESTIMATORS)
    listed = {a["name"]: a["source"] for a in architectures()}
    assert all(listed[n] == "classic" for n in CLASSIC)
    for name in CLASSIC:
        assert Recipe(architecture=name).architecture == name and is_classic(name)
    for bad in ("sklearn:", ":x", "a:b:c", "../x", "sklearn:Logistic", "a b"):
        with pytest.raises(ValidationError):
            Recipe(architecture=bad)


@pytest.mark.parametrize("architecture", sorted(set(ESTIMATORS) - {"sklearn:ridge"}))  # ridge: regression only
def test_each_classic_estimator_trains_converts_and_answers_as_fitted(architecture: str) -> None:
    ds = _wine()
    seen: list[tuple[float, dict[str, float]]] = []
    fitted = fit(ds, Recipe(architecture=architecture, epochs=4), lambda loss, m: seen.append((loss, m)))
    assert fitted.metrics["accuracy"] >= 0.85 and 0 < fitted.metrics["macro_f1"] <= 1, fitted.metrics
    assert seen and seen[0][1] == fitted.metrics and seen[0][0] > 0
    graph = to_onnx(fitted.estimator, ds.x.shape[1])
    report = check_parity(fitted.estimator, graph, fitted.x_test, atol=1e-5)
    assert report.max_abs_diff <= 1e-5 and report.label_agreement == 1.0
    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == list(OUTPUTS)
    assert [(i.name, i.type, i.shape[1]) for i in session.get_inputs()] == [("input", "tensor(float)", 13)]
    _, probabilities, logits = session.run(None, {"input": ds.x[:20]})
    np.testing.assert_allclose(np.exp(logits), probabilities, atol=1e-6)


def test_a_graph_that_disagrees_is_refused() -> None:
    from sklearn.linear_model import LogisticRegression

    ds = _wine()
    model = LogisticRegression(max_iter=2000).fit(ds.x, ds.y)
    graph = to_onnx(model, ds.x.shape[1])
    model.coef_ = model.coef_ * 1.5  # the estimator moved on: the graph no longer answers as it does
    with pytest.raises(ParityError, match="differ from LogisticRegression"):
        check_parity(model, graph, ds.x, atol=1e-5)


def test_a_skops_pipeline_loads_with_trusted_types_only(tmp_path: Path) -> None:
    import skops.io as sio
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer, StandardScaler

    ds = _wine()
    good = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(ds.x, ds.y)
    sio.dump(good, tmp_path / "good.skops")
    loaded = load_pipeline(tmp_path / "good.skops")
    np.testing.assert_array_equal(loaded.predict_proba(ds.x), good.predict_proba(ds.x))
    assert classes_of(loaded) == ["0", "1", "2"]

    # A function of this test module is code from elsewhere: refused by name, never imported or run.
    # Scaled, as the good one is: unscaled wine features make lbfgs stop short of convergence (a warning).
    risky = make_pipeline(FunctionTransformer(_shout), StandardScaler(), LogisticRegression(max_iter=1000))
    risky.fit(ds.x, ds.y)
    sio.dump(risky, tmp_path / "risky.skops")
    with pytest.raises(UntrustedFile, match=r"outside the trusted set.*_shout"):
        load_pipeline(tmp_path / "risky.skops")

    (tmp_path / "pickled.skops").write_bytes(b"\x80\x04K\x01.")  # a pickle is not a skops file
    with pytest.raises(UntrustedFile, match="not a skops file"):
        load_pipeline(tmp_path / "pickled.skops")


def _shout(x: np.ndarray) -> np.ndarray:
    return x
