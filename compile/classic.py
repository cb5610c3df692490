"""Classic models to ONNX: scikit-learn estimators and pipelines, XGBoost and LightGBM, and their parity.

A fitted classifier (or a Pipeline ending in one) becomes one graph with skl2onnx; XGBoost and
LightGBM estimators are converted by onnxmltools' converters, registered with skl2onnx so they
convert inside a Pipeline too. Every graph answers the same outputs, whatever made it:

    label          [-1]           the predicted class, as the estimator's `classes_` (INT64 or BYTES)
    probabilities  FP32  [-1, C]  the estimator's `predict_proba`
    logits         FP32  [-1, C]  log(probabilities): softmax(logits) gives the probabilities back,
                                  so whatever reads a torch graph's `logits` reads these the same way

Inputs: a numeric matrix is one FP32 `input` [-1, F] (today's dataset loader). A ColumnTransformer
fed per-column inputs (the table contract, model_store/features.py) converts through the same
`to_onnx` by passing `inputs` (name → "number" or "category"): one [-1, 1] input per column.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx

from .errors import CompileError, ParityError

INPUT_NAME = "input"
OUTPUTS = ("label", "probabilities", "logits")
OPSETS = {"": 18, "ai.onnx.ml": 3}
INSTALL = "pip install 'fermion[classic]'"
_FLOOR = 1e-30  # log(0) would make -inf logits; the probabilities output stays exact


class ConversionError(CompileError):
    """The model is not one skl2onnx/onnxmltools can turn into a graph (the message names why)."""


@dataclass(frozen=True)
class ClassicParity:
    """How far ONNX Runtime's probabilities were from the estimator's, and whether the labels agree."""

    max_abs_diff: float
    label_agreement: float
    samples: int
    atol: float

    def as_dict(self) -> dict[str, float]:
        """The report as plain numbers for the manifest."""
        return {k: float(v) for k, v in asdict(self).items()}


def _skl2onnx() -> Any:
    try:
        import skl2onnx
    except ImportError as exc:
        raise ModuleNotFoundError(f"converting classic models needs skl2onnx: {INSTALL}", name=exc.name) from exc
    _register_boosters(skl2onnx)
    _int_missing_flags()
    return skl2onnx


def _int_missing_flags() -> None:
    """Give skl2onnx's HistGradientBoosting trees 0/1 missing-value flags, never Python bools.

    skl2onnx 1.20 passes `False` for a leaf's `nodes_missing_value_tracks_true`; onnx >= 1.23 refuses
    a bool in an ints attribute ("Expected an int, got a boolean"), so every HistGradientBoosting
    conversion fails. Wrapping the one function that builds the attribute fixes it where it starts.
    """
    from skl2onnx.common import tree_ensemble

    add_node = tree_ensemble.add_node
    if getattr(add_node, "fermion_ints", False):
        return

    def add_node_ints(*args: Any, nodes_missing_value_tracks_true: Any = 0, **kwargs: Any) -> Any:
        return add_node(*args, nodes_missing_value_tracks_true=int(nodes_missing_value_tracks_true), **kwargs)

    add_node_ints.fermion_ints = True  # type: ignore[attr-defined]
    tree_ensemble.add_node = add_node_ints


def _register_boosters(skl2onnx: Any) -> None:
    """Teach skl2onnx the XGBoost and LightGBM classifiers (each only if installed)."""
    from skl2onnx.common.shape_calculator import calculate_linear_classifier_output_shapes

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier

        skl2onnx.update_registered_converter(
            XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost,
            options=options,
        )  # fmt: skip
    except ImportError:
        pass
    try:
        from lightgbm import LGBMClassifier
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        skl2onnx.update_registered_converter(
            LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes, convert_lightgbm,
            options={**options, "zipmap": [True, False, "columns", "raw"]},
        )  # fmt: skip
    except ImportError:
        pass


def to_onnx(model: Any, n_features: int | None = None, *, inputs: dict[str, str] | None = None) -> bytes:
    """The fitted classifier (or pipeline) as an ONNX graph with the outputs named in this module's docstring.

    `n_features`: one FP32 `input` [-1, F]. `inputs`: one [-1, 1] input per column, FP32 for
    "number" (and integer, boolean) columns and BYTES for "category" ones, in the model's column order.
    """
    skl2onnx = _skl2onnx()
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    if inputs is not None:
        types = [
            (n, StringTensorType([None, 1]) if k == "category" else FloatTensorType([None, 1]))
            for n, k in inputs.items()
        ]
    elif n_features is not None:
        types = [(INPUT_NAME, FloatTensorType([None, n_features]))]
    else:
        raise ValueError("give n_features or inputs")
    if not hasattr(model, "predict_proba"):
        raise ConversionError(f"{type(model).__name__} has no predict_proba: only classifiers convert")
    try:
        graph = skl2onnx.convert_sklearn(model, initial_types=types, options={"zipmap": False}, target_opset=OPSETS)
    except (
        Exception
    ) as exc:  # skl2onnx raises many types (RuntimeError, MissingShapeCalculator, NotImplementedError...)
        raise ConversionError(f"skl2onnx could not convert {_describe(model)}: {type(exc).__name__}: {exc}") from exc
    return _standard_outputs(graph).SerializeToString()


def _describe(model: Any) -> str:
    steps = getattr(model, "steps", None)
    return " → ".join(type(s).__name__ for _, s in steps) if steps else type(model).__name__


def _standard_outputs(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Rename the converter's two outputs to `label` and `probabilities`, and add `logits`."""
    from onnx import TensorProto, helper

    outs = graph.graph.output
    if len(outs) != 2:
        raise ConversionError(f"expected a label and a probabilities output; the graph has {[o.name for o in outs]}")
    renames = {outs[0].name: "label", outs[1].name: "probabilities"}
    for node in graph.graph.node:
        node.output[:] = [renames.get(o, o) for o in node.output]
        node.input[:] = [renames.get(i, i) for i in node.input]
    for out in outs:
        out.name = renames[out.name]
    floor = helper.make_tensor("fermion_floor", TensorProto.FLOAT, [], [_FLOOR])
    graph.graph.initializer.append(floor)
    graph.graph.node.extend(
        [
            helper.make_node("Max", ["probabilities", "fermion_floor"], ["fermion_floored"]),
            helper.make_node("Log", ["fermion_floored"], ["logits"]),
        ]
    )
    classes = outs[1].type.tensor_type.shape.dim[1]
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, classes.dim_value or None])
    graph.graph.output.append(logits)
    onnx.checker.check_model(graph)
    return graph


def check_parity(
    model: Any, onnx_bytes: bytes, rows: np.ndarray | dict[str, np.ndarray], *, atol: float = 1e-5
) -> ClassicParity:
    """Compare ONNX Runtime's probabilities with `predict_proba` on `rows`; raise ParityError past `atol`."""
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    feeds = rows if isinstance(rows, dict) else {INPUT_NAME: np.asarray(rows, dtype=np.float32)}
    (got,) = session.run(["probabilities"], feeds)
    expected = np.asarray(model.predict_proba(_frame(feeds) if isinstance(rows, dict) else feeds[INPUT_NAME]))
    diff = float(np.max(np.abs(got.astype(np.float64) - expected))) if expected.size else 0.0
    agreement = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1))) if len(expected) else 1.0
    report = ClassicParity(max_abs_diff=diff, label_agreement=agreement, samples=len(expected), atol=atol)
    if diff > atol:
        raise ParityError(
            f"ONNX Runtime's probabilities differ from {_describe(model)}'s by up to {diff:.3g} "
            f"(allowed {atol:g}) on {len(expected)} rows; labels agree on {agreement:.2%}"
        )
    return report


def _frame(feeds: dict[str, np.ndarray]) -> Any:
    """Per-column inputs as the DataFrame a ColumnTransformer was fitted on."""
    import pandas as pd

    return pd.DataFrame({name: col.reshape(-1) for name, col in feeds.items()})


def classes_of(model: Any) -> list[str]:
    """The class names in output order (the estimator's `classes_`, as text)."""
    classes = getattr(model, "classes_", None)
    if classes is None and hasattr(model, "steps"):
        classes = getattr(model.steps[-1][1], "classes_", None)
    return [str(c) for c in classes] if classes is not None else []
