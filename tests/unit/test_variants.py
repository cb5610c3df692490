"""fp32, int8 and fp16 variants, each judged against the torch model on held-out data."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
from sklearn.datasets import load_breast_cancer, load_digits

from fermion.compile import VARIANT_FILES, compile_variants
from fermion.events import Recipe
from fermion.training.data import Dataset
from fermion.training.loop import train


@pytest.fixture(scope="module")
def digits_cnn():  # type: ignore[no-untyped-def]
    d = load_digits()
    ds = Dataset(d.data.astype(np.float32), d.target.astype(np.int64), [str(i) for i in range(10)])
    return train(ds, Recipe(architecture="cnn", epochs=8, learning_rate=2e-3))


@pytest.fixture(scope="module")
def tabular_mlp():  # type: ignore[no-untyped-def]
    d = load_breast_cancer()
    ds = Dataset(d.data.astype(np.float32), d.target.astype(np.int64), ["malignant", "benign"])
    return train(ds, Recipe(architecture="mlp", epochs=30, learning_rate=3e-3))


def test_the_registry_knows_the_variants_by_the_names_compile_gives_them() -> None:
    # The inference function fetches a variant's file before the manifest that lists it has arrived.
    from fermion.model_store import manifest

    assert manifest.VARIANT_FILES == VARIANT_FILES


@pytest.mark.parametrize("model", ["digits_cnn", "tabular_mlp"])
def test_every_variant_is_registered_with_its_parity_report(model: str, request: pytest.FixtureRequest) -> None:
    trained = request.getfixturevalue(model)
    compiled = compile_variants(trained.module, trained.x_test, trained.y_test, calibration=trained.x_calibration)
    report = compiled.report
    assert set(compiled.variants) == {"fp32", "int8", "fp16"}, report["refused"]
    assert set(compiled.files) == set(VARIANT_FILES.values())
    for name, v in compiled.variants.items():
        assert v["size"] == len(compiled.files[v["file"]])
        assert v["accuracy_delta"] >= -report["accuracy_budget"], name
        assert v["cpu_latency_ms"]["batch1"] > 0 and v["cpu_latency_ms"]["batch32"] > 0
        session = ort.InferenceSession(compiled.files[v["file"]], providers=["CPUExecutionProvider"])
        assert session.get_inputs()[0].type == "tensor(float)"  # fp16 keeps fp32 inputs: same signature
    assert compiled.variants["fp32"]["max_abs_diff"] < 1e-4
    assert report["exporter"] == "torchscript" and report["opset"] == 18
    assert compiled.variants["fp32"]["size"] / compiled.variants["int8"]["size"] >= 3.0


def test_a_variant_past_the_accuracy_budget_is_refused_with_the_reason(digits_cnn) -> None:  # type: ignore[no-untyped-def]
    compiled = compile_variants(
        digits_cnn.module, digits_cnn.x_test, digits_cnn.y_test, calibration=digits_cnn.x_calibration, budget=-0.5
    )
    assert set(compiled.variants) == {"fp32"}  # fp32 is proven exactly, so it always stays
    assert set(compiled.files) == {"model.onnx"}
    for name in ("int8", "fp16"):
        assert "below torch's" in compiled.report["refused"][name]
