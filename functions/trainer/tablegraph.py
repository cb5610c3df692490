"""A table model's registered graphs: each compiled variant of the network inside the table's preparation.

The fp32 graph is proven against the trainer on raw rows (blanks, categories, booleans): the trainer's
own encoding (training/tables.py) and torch on one side, ONNX Runtime on the raw columns on the other;
the preparation alone is proven too (its features against the trainer's encoded rows). A regression's
int8/fp16 variants are judged by held-out R² (their accuracy
is no measure of a regression): one more than the budget below fp32's is not registered.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnxruntime as ort
import torch

from fermion.compile import Compiled
from fermion.compile.chunks import session_outputs
from fermion.compile.export import INPUT_NAME
from fermion.compile.preprocessing import FEATURES, attach, preparation
from fermion.compile.verify import check_graph_parity
from fermion.model_store.features import FeatureSchema
from fermion.training.data import Dataset
from fermion.training.metrics import evaluate_regression
from fermion.training.profile import answers
from fermion.training.tables import encode, graph_inputs

PARITY_ROWS = 2_000
PARITY_ATOL = 1e-6
PARITY_RTOL = 1e-6
"""The preparation must match the trainer's to 1e-6 (it is exact: the same float32 steps); the whole graph's
outputs to 1e-6 of their size as well, since ONNX Runtime and torch sum a layer's products in their own order."""


def table_graphs(
    compiled: Compiled,
    module: torch.nn.Module,
    ds: Dataset,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    budget: float,
    atol: float = PARITY_ATOL,
) -> Compiled:
    """The compiled variants with the preparation attached; the fp32 graph's parity on raw rows recorded."""
    assert ds.schema is not None and ds.sample is not None
    schema = ds.schema
    report: dict[str, Any] = dict(compiled.report)
    variants = {name: dict(entry) for name, entry in compiled.variants.items()}
    if schema.task == "regression":
        _judge_regression(compiled, variants, report, schema, x_test, y_test, budget)
    files = {}
    for entry in variants.values():
        files[entry["file"]] = attach(compiled.files[entry["file"]], schema)
    rows = ds.sample.slice(0, PARITY_ROWS)
    x, feeds = encode(schema, rows), graph_inputs(schema, rows)
    pre = preparation(schema, compiled.files[variants["fp32"]["file"]])
    report["preprocessing_parity"] = check_graph_parity({FEATURES: x}, pre, feeds, atol=atol).as_dict()
    fp32 = files[variants["fp32"]["file"]]
    whole = check_graph_parity(answers(module, schema, x), fp32, feeds, atol=atol, rtol=PARITY_RTOL)
    report["table_parity"] = whole.as_dict()
    report["variants"] = variants
    return Compiled(files, report, variants)


def _judge_regression(
    compiled: Compiled,
    variants: dict[str, dict[str, Any]],
    report: dict[str, Any],
    schema: FeatureSchema,
    x: np.ndarray,
    y: np.ndarray,
    budget: float,
) -> None:
    """Held-out R² of each variant; a reduced-precision one more than `budget` below fp32's is refused."""
    assert schema.target is not None
    scores: dict[str, float] = {}
    for name, entry in list(variants.items()):
        session = ort.InferenceSession(compiled.files[entry["file"]], providers=["CPUExecutionProvider"])
        out = session_outputs(session, INPUT_NAME, np.ascontiguousarray(x, dtype=np.float32))
        metrics = evaluate_regression(out[:, 0].astype(np.float64) * schema.target.std + schema.target.mean, y)
        scores[name] = metrics["r2"]
        entry.pop("accuracy", None), entry.pop("accuracy_delta", None), entry.pop("argmax_agreement", None)
        entry["r2"] = metrics["r2"]
    for name in [n for n in variants if n != "fp32"]:
        if scores[name] < scores["fp32"] - budget:
            report.setdefault("refused", {})[name] = (
                f"held-out r2 {scores[name]:.4f} is more than {budget} below fp32's {scores['fp32']:.4f}"
            )
            del variants[name]
    report.pop("torch_accuracy", None)
