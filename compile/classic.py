"""Classic models to ONNX: scikit-learn estimators and pipelines, XGBoost and LightGBM, and their parity.

A fitted classifier (or a Pipeline ending in one) becomes one graph with skl2onnx; XGBoost and
LightGBM estimators are converted by onnxmltools' converters, registered with skl2onnx so they
convert inside a Pipeline too. Every graph answers the same outputs, whatever made it:

    label          [-1]           the predicted class, as the estimator's `classes_` (INT64 or BYTES)
    probabilities  FP32  [-1, C]  the estimator's `predict_proba`
    logits         FP32  [-1, C]  log(probabilities): softmax(logits) gives the probabilities back,
                                  so whatever reads a torch graph's `logits` reads these the same way

A fitted regressor (a table's regression, compile/classic_tables.py) answers one output instead:

    prediction     FP32  [-1, 1]  the estimator's `predict`

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
PREDICTION = "prediction"
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
    """Teach skl2onnx the XGBoost and LightGBM classifiers and regressors (each only if installed)."""
    from skl2onnx.common.shape_calculator import (
        calculate_linear_classifier_output_shapes,
        calculate_linear_regressor_output_shapes,
    )

    options = {"nocl": [True, False], "zipmap": [True, False, "columns"]}
    try:
        from onnxmltools.convert.xgboost.operator_converters.XGBoost import convert_xgboost
        from xgboost import XGBClassifier, XGBRegressor

        skl2onnx.update_registered_converter(
            XGBClassifier, "XGBoostXGBClassifier", calculate_linear_classifier_output_shapes, convert_xgboost,
            options=options,
        )  # fmt: skip
        skl2onnx.update_registered_converter(
            XGBRegressor, "XGBoostXGBRegressor", calculate_linear_regressor_output_shapes, convert_xgboost
        )
    except ImportError:
        pass
    try:
        from lightgbm import LGBMClassifier, LGBMRegressor
        from onnxmltools.convert.lightgbm.operator_converters.LightGbm import convert_lightgbm

        skl2onnx.update_registered_converter(
            LGBMClassifier, "LightGbmLGBMClassifier", calculate_linear_classifier_output_shapes, convert_lightgbm,
            options={**options, "zipmap": [True, False, "columns", "raw"]},
        )  # fmt: skip
        skl2onnx.update_registered_converter(
            LGBMRegressor, "LightGbmLGBMRegressor", calculate_linear_regressor_output_shapes, convert_lightgbm,
            options={"split": None},
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
    regressor = is_regressor(model)
    if not regressor and not hasattr(model, "predict_proba"):
        raise ConversionError(f"{type(model).__name__} has no predict_proba: only classifiers and regressors convert")
    try:
        options = None if regressor else {"zipmap": False}
        graph = skl2onnx.convert_sklearn(model, initial_types=types, options=options, target_opset=OPSETS)
    except (
        Exception
    ) as exc:  # skl2onnx raises many types (RuntimeError, MissingShapeCalculator, NotImplementedError...)
        raise ConversionError(f"skl2onnx could not convert {_describe(model)}: {type(exc).__name__}: {exc}") from exc
    _exact_thresholds(graph, model)
    return (_prediction_output(graph) if regressor else _standard_outputs(graph)).SerializeToString()


Split = tuple[float, Any, Any] | None
"""A reference tree: (threshold, left, right) for a numeric x <= threshold split, None for anything else."""


def _exact_thresholds(graph: onnx.ModelProto, model: Any) -> None:
    """Round each float64 split threshold (LightGBM, HistGradientBoosting) down to a float32, never to the nearest.

    These libraries split at float64 thresholds (x <= t), midpoints between the rows' values; the graph's
    are float32. Rounded to the nearest, a threshold can land on the float32 value just above t that rows
    hold, which then take the other branch (seen: 0.02 apart in probabilities on a standardised column).
    For float32 rows, x <= t exactly when x <= the largest float32 not above t, so that is the one to keep.
    Each graph tree is walked beside the library's own (true branch = left child), and a node is changed
    only where its value is the split's t rounded to the nearest float32; the parity check judges the rest.
    """
    trees = _float64_trees(model.steps[-1][1] if hasattr(model, "steps") else model)
    for node in graph.graph.node:
        if not trees or not node.op_type.startswith("TreeEnsemble"):
            continue
        attrs = {a.name: a for a in node.attribute}
        values, modes = attrs["nodes_values"].floats, attrs["nodes_modes"].strings
        ids = zip(attrs["nodes_treeids"].ints, attrs["nodes_nodeids"].ints, strict=True)
        at: dict[tuple[int, int], int] = {key: position for position, key in enumerate(ids)}
        true_ids, false_ids = attrs["nodes_truenodeids"].ints, attrs["nodes_falsenodeids"].ints
        for tree, reference in enumerate(trees):
            stack: list[tuple[int | None, Split]] = [(at.get((tree, 0)), reference)]
            while stack:
                i, split = stack.pop()
                if i is None or split is None or modes[i] != b"BRANCH_LEQ":
                    continue
                t, left, right = split
                if np.float32(t) != np.float32(values[i]):
                    break  # not the tree this one was converted from: leave it as the converter made it
                if float(np.float32(t)) > t:
                    values[i] = float(np.nextafter(np.float32(t), np.float32(-np.inf)))
                stack += [(at.get((tree, true_ids[i])), left), (at.get((tree, false_ids[i])), right)]


def _float64_trees(estimator: Any) -> list[Split]:
    """A fitted LightGBM or HistGradientBoosting model's trees, in the converters' tree order (empty for others).

    skl2onnx numbers HistGradientBoosting's trees iteration by iteration, class by class; onnxmltools numbers
    LightGBM's trees as the booster does.
    """
    predictors = getattr(estimator, "_predictors", None)  # scikit-learn's HistGradientBoosting*
    if predictors is not None:

        def hist(nodes: Any, i: int) -> Split:
            row = nodes[i]
            if row["is_leaf"] or row["is_categorical"]:
                return None
            return float(row["num_threshold"]), hist(nodes, int(row["left"])), hist(nodes, int(row["right"]))

        return [hist(tree.nodes, 0) for trees in predictors for tree in trees]
    booster = getattr(estimator, "booster_", None)
    if booster is None or not type(estimator).__module__.startswith("lightgbm"):
        return []

    def light(n: dict[str, Any]) -> Split:
        if "split_index" not in n or n.get("decision_type") != "<=":
            return None
        return float(n["threshold"]), light(n["left_child"]), light(n["right_child"])

    return [light(info["tree_structure"]) for info in booster.dump_model()["tree_info"]]


def is_regressor(model: Any) -> bool:
    """Whether the fitted estimator (or a pipeline's last step) predicts values rather than classes."""
    last = model.steps[-1][1] if hasattr(model, "steps") else model
    return getattr(last, "_estimator_type", None) == "regressor" or (
        hasattr(last, "__sklearn_tags__") and last.__sklearn_tags__().estimator_type == "regressor"
    )


def _prediction_output(graph: onnx.ModelProto) -> onnx.ModelProto:
    """Rename a regressor's one output to `prediction`, [-1, 1]."""
    outs = graph.graph.output
    if len(outs) != 1:
        raise ConversionError(f"expected one output from a regressor; the graph has {[o.name for o in outs]}")
    old = outs[0].name
    for node in graph.graph.node:
        node.output[:] = [PREDICTION if o == old else o for o in node.output]
        node.input[:] = [PREDICTION if i == old else i for i in node.input]
    outs[0].name = PREDICTION
    onnx.checker.check_model(graph)
    return graph


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

    if is_regressor(model):  # a table's regression is checked by compile/classic_tables.py, on its columns
        raise ConversionError(f"{_describe(model)} is a regressor: only classifiers are checked on rows of features")
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
