"""A classic model on a table: the table's preparation in front of the converted estimator, and its parity.

The estimator is fitted on the rows training/tables.py encodes, the torch networks' own inputs, so the
preparation graph that feeds a torch network (compile/preprocessing.py) feeds it unchanged: raw named
columns in ([-1, 1] FP32 or BYTES; blanks NaN or ""), the estimator's graph (compile/classic.py, input
`input`) in the middle, the table contract's answers out (model_store/features.py):

    classification  label BYTES [-1] (the class name), probabilities FP32 [-1, C], logits FP32 [-1, C]
                    (log-probabilities, as every classic graph); classes in the schema's order
    regression      prediction FP32 [-1, 1] in the label's units (the estimator learns the label as it is)

One preparation for both kinds of model means one encoding to trust: the whole graph is compared with the
estimator on encoded rows, so the preparation's float32 steps and the conversion are checked at once.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from .classic import PREDICTION
from .errors import ExportError, ParityError
from .preprocessing import LOGITS, ML_DOMAIN, PROBABILITIES, joined

LABEL = "label"
ML_STRINGS = 2
EST = "est/"
"""Prefix of the estimator's own names: a column may be called `input` or `label` without colliding."""


@dataclass(frozen=True)
class TableParity:
    """How far ONNX Runtime on raw columns was from the estimator on the encoded rows."""

    max_abs_diff: float
    max_rel_diff: float
    """Regression: the difference over max(1, |prediction|) (a tree sums float32 leaves in the label's units)."""
    label_agreement: float
    samples: int
    atol: float

    def as_dict(self) -> dict[str, float]:
        """The report as plain numbers for the manifest."""
        return {k: float(v) for k, v in asdict(self).items()}


def on_table(estimator_graph: bytes, schema: Any) -> bytes:
    """The estimator's graph (input `input`) behind the schema's preparation, with the contract's outputs."""
    net = onnx.load_from_string(estimator_graph)
    opset = next((o.version for o in net.opset_import if o.domain in ("", "ai.onnx")), 18)
    # The preparation's LabelEncoder on strings needs ai.onnx.ml 2 or later; a converter declares the least
    # its own operators need (1 for trees, none for a linear regressor), and their ops are the same from 1 to 3.
    ml = max(next((o.version for o in net.opset_import if o.domain == ML_DOMAIN), 0), ML_STRINGS)
    del net.opset_import[:]
    net.opset_import.extend([helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ml)])
    model = joined(schema, net, opset, ml, EST, "estimator")
    graph = model.graph
    del graph.output[:]
    if schema.task == "regression":
        graph.node.append(helper.make_node("Identity", [EST + PREDICTION], [PREDICTION]))
        graph.output.append(helper.make_tensor_value_info(PREDICTION, TensorProto.FLOAT, [-1, 1]))
    else:
        n = len(schema.classes)
        graph.node.extend(
            [
                helper.make_node("Identity", [EST + PROBABILITIES], [PROBABILITIES]),
                helper.make_node("Identity", [EST + LOGITS], [LOGITS]),
                # The estimator learnt class indices (0..C-1 in the schema's order): answer their names.
                helper.make_node(
                    "LabelEncoder",
                    [EST + LABEL],
                    [LABEL],
                    domain=ML_DOMAIN,
                    keys_int64s=list(range(n)),
                    values_strings=[str(c) for c in schema.classes],
                    default_string="",
                ),
            ]
        )
        graph.output.extend(  # compile/classic.py's order: label, probabilities, logits
            [
                helper.make_tensor_value_info(LABEL, TensorProto.STRING, [-1]),
                helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [-1, n]),
                helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [-1, n]),
            ]
        )
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the classic table model's graph does not check: {exc}") from exc
    return model.SerializeToString()


def estimator_answers(model: Any, x: np.ndarray, task: str) -> np.ndarray:
    """What the fitted estimator says for encoded rows: probabilities [n, C] or predictions [n, 1]."""
    if task == "regression":
        return np.asarray(model.predict(x), dtype=np.float64).reshape(-1, 1)
    return np.asarray(model.predict_proba(x), dtype=np.float64)


def check_table_parity(
    model: Any, graph: bytes, x: np.ndarray, feeds: dict[str, np.ndarray], task: str, *, atol: float = 1e-5
) -> TableParity:
    """ONNX Runtime on the raw columns `feeds` against the estimator on their encoded rows `x`; ParityError past atol.

    Classification compares probabilities absolutely; regression relative to max(1, |prediction|).
    """
    import onnxruntime as ort

    session = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    name = PREDICTION if task == "regression" else PROBABILITIES
    (got,) = session.run([name], feeds)
    expected = estimator_answers(model, x, task)
    if not len(expected):
        return TableParity(0.0, 0.0, 1.0, 0, atol)
    diff = np.abs(got.astype(np.float64) - expected)
    rel = diff / np.maximum(1.0, np.abs(expected))
    if task == "regression":
        agreement, judged = 1.0, float(rel.max())
    else:
        agreement, judged = float(np.mean(got.argmax(axis=1) == expected.argmax(axis=1))), float(diff.max())
    report = TableParity(float(diff.max()), float(rel.max()), agreement, len(expected), atol)
    if judged > atol:
        what = "predictions (relative to their size)" if task == "regression" else "probabilities"
        raise ParityError(
            f"ONNX Runtime's {what} on raw columns differ from {type(model).__name__}'s on encoded rows by up to "
            f"{judged:.3g} (allowed {atol:g}) on {len(expected)} rows"
        )
    return report
