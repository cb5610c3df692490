"""Tiny real table models (the graph contract of model_store/features.py) and a two-input INT64 graph.

Built with onnx.helper, as the trainer's export would shape them: one [-1, 1] input per column (FP32
numbers and booleans, BYTES categories), blanks imputed and categories one-hot encoded inside the
graph, `logits` and `probabilities` out for a classifier, `prediction` for a regression.
"""

from __future__ import annotations

import numpy as np
from onnx import TensorProto, helper, numpy_helper

from fermion.model_store import Draft, Signature, TensorSpec
from fermion.model_store.features import Column, FeatureSchema, Target
from tests.helpers.models import model_bytes

PLANS = ["basic", "plus", "pro"]
CLASSES = ["churn", "stay", "upgrade"]
COLUMNS = [
    Column(name="age", kind="number", datatype="FP32", impute=40.0, mean=40.0, std=10.0),
    Column(name="plan", kind="category", datatype="BYTES", impute="basic", categories=PLANS),
    Column(name="member", kind="boolean", datatype="FP32", impute=0.0, true_values=["yes", "true", "1"]),
]
# One-hot width of each column, in order: the linear layer's rows.
WIDTH = 1 + len(PLANS) + 1


def table_schema(task: str = "classification") -> FeatureSchema:
    """The schema of `table_onnx`: three columns, the label `outcome`, an id column dropped."""
    if task == "regression":
        target = Target(mean=100.0, std=20.0, min=40.0, max=180.0)
        return FeatureSchema(columns=COLUMNS, label="spend", task="regression", target=target, dropped={"id": "id"})
    return FeatureSchema(columns=COLUMNS, label="outcome", task="classification", classes=CLASSES, dropped={"id": "id"})


def table_onnx(task: str = "classification", seed: int = 0) -> bytes:
    """A real table model: impute, scale, one-hot inside the graph, then a linear layer."""
    rng = np.random.default_rng(seed)
    n_out = 1 if task == "regression" else len(CLASSES)
    init = [
        numpy_helper.from_array(np.array([[40.0]], np.float32), "age_fill"),
        numpy_helper.from_array(np.array([[40.0]], np.float32), "age_mean"),
        numpy_helper.from_array(np.array([[10.0]], np.float32), "age_std"),
        numpy_helper.from_array(np.array([[0.0]], np.float32), "member_fill"),
        numpy_helper.from_array(np.arange(len(PLANS), dtype=np.int64).reshape(1, -1), "plan_ids"),
        numpy_helper.from_array(rng.normal(size=(WIDTH, n_out)).astype(np.float32), "W"),
        numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), "B"),
    ]
    nodes = [
        helper.make_node("IsNaN", ["age"], ["age_nan"]),
        helper.make_node("Where", ["age_nan", "age_fill", "age"], ["age_filled"]),
        helper.make_node("Sub", ["age_filled", "age_mean"], ["age_centred"]),
        helper.make_node("Div", ["age_centred", "age_std"], ["age_scaled"]),
        helper.make_node("IsNaN", ["member"], ["member_nan"]),
        helper.make_node("Where", ["member_nan", "member_fill", "member"], ["member_filled"]),
        # Unseen categories (and blanks) map to -1: all zeros after the one-hot comparison.
        helper.make_node(
            "CategoryMapper",
            ["plan"],
            ["plan_id"],
            domain="ai.onnx.ml",
            cats_strings=PLANS,
            cats_int64s=list(range(len(PLANS))),
            default_int64=-1,
        ),
        helper.make_node("Equal", ["plan_id", "plan_ids"], ["plan_hot"]),
        helper.make_node("Cast", ["plan_hot"], ["plan_float"], to=TensorProto.FLOAT),
        helper.make_node("Concat", ["age_scaled", "plan_float", "member_filled"], ["x"], axis=1),
        helper.make_node("MatMul", ["x", "W"], ["xw"]),
    ]
    if task == "regression":
        nodes.append(helper.make_node("Add", ["xw", "B"], ["prediction"]))
        outputs = [helper.make_tensor_value_info("prediction", TensorProto.FLOAT, ["batch", 1])]
    else:
        nodes.append(helper.make_node("Add", ["xw", "B"], ["logits"]))
        nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
        outputs = [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out]),
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out]),
        ]
    inputs = [
        helper.make_tensor_value_info("age", TensorProto.FLOAT, ["batch", 1]),
        helper.make_tensor_value_info("plan", TensorProto.STRING, ["batch", 1]),
        helper.make_tensor_value_info("member", TensorProto.FLOAT, ["batch", 1]),
    ]
    graph = helper.make_graph(nodes, "table", inputs, outputs, init)
    return model_bytes(graph, ml=True)


def table_draft(task: str = "classification") -> Draft:
    """The manifest draft of `table_onnx`, carrying its feature schema."""
    schema = table_schema(task)
    inputs = [TensorSpec(name=c.name, datatype=c.datatype, shape=[-1, 1]) for c in schema.columns]
    if task == "regression":
        outputs = [TensorSpec(name="prediction", datatype="FP32", shape=[-1, 1])]
    else:
        outputs = [TensorSpec(name=n, datatype="FP32", shape=[-1, len(CLASSES)]) for n in ("logits", "probabilities")]
    return Draft(
        signature=Signature(inputs=inputs, outputs=outputs),
        labels=list(schema.classes),
        features=schema.model_dump(mode="json"),
    )


def two_input_onnx(length: int = 4) -> bytes:
    """A graph as exported text models look: INT64 `input_ids` and `attention_mask` [-1, L], `logits` [-1, 2]."""
    w = numpy_helper.from_array(np.array([[0.5, -0.5]], np.float32), "W")
    axes = numpy_helper.from_array(np.array([1], np.int64), "axes")
    nodes = [
        helper.make_node("Mul", ["input_ids", "attention_mask"], ["kept"]),
        helper.make_node("Cast", ["kept"], ["kept_float"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["kept_float", "axes"], ["total"], keepdims=1),
        helper.make_node("Mul", ["total", "W"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "two_inputs",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", length]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", length]),
        ],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [w, axes],
    )
    return model_bytes(graph)


def two_input_draft(length: int = 4) -> Draft:
    """The manifest draft of `two_input_onnx`: no feature schema, labels `negative` and `positive`."""
    spec = [TensorSpec(name=n, datatype="INT64", shape=[-1, length]) for n in ("input_ids", "attention_mask")]
    return Draft(
        signature=Signature(inputs=spec, outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 2])]),
        labels=["negative", "positive"],
    )
