"""A table model's preparation as ONNX: raw named columns in, the network in the middle, answers out.

The graph contract is model_store/features.py's. Per column (in the schema's order):
- number, integer: FP32 [-1, 1]; NaN (a blank) → the training median (Where/IsNaN), then
  (x - mean) / std, each step in float32 as training/tables.py's `encode` does it;
- boolean: FP32 0/1 [-1, 1]; NaN → the most frequent value;
- category: BYTES [-1, 1]; ai.onnx.ml LabelEncoder maps each vocabulary entry to its position, "" (a
  blank) to the most frequent value's, anything else to -1; Equal against 0..K-1 makes the one-hot
  row, so an unseen value is all zeros.
The pieces are concatenated into the network's input. Classification outputs `logits` and
`probabilities` (Softmax); a regression's network learns the standardised target, so its single
output times the target's std plus its mean is `prediction`, in the label's units.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, compose, helper, numpy_helper

from .errors import ExportError
from .export import INPUT_NAME, OUTPUT_NAME

# model_store.features' names (compile sits below model_store, so they are repeated, not imported).
LOGITS, PROBABILITIES, PREDICTION = "logits", "probabilities", "prediction"
ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3
FEATURES = "pre/features"
"""The preparation's output: the network's input rows."""
NET = "net/"
"""Prefix of the network's own names: a column may be called `input` without colliding."""


def _const(name: str, value: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(value, name)


def _column(column: Any, i: int) -> tuple[list[onnx.NodeProto], list[TensorProto], str]:
    """The nodes and constants preparing one column; the name of its prepared [-1, k] float tensor."""
    p = f"pre/{i}/"
    if column.kind == "category":
        vocabulary = list(column.categories)
        keys = [*vocabulary, ""]
        values = [*range(len(vocabulary)), vocabulary.index(str(column.impute))]
        nodes = [
            helper.make_node(
                "LabelEncoder",
                [column.name],
                [p + "index"],
                domain=ML_DOMAIN,
                keys_strings=keys,
                values_int64s=values,
                default_int64=-1,
            ),
            helper.make_node("Equal", [p + "index", p + "positions"], [p + "hot"]),
            helper.make_node("Cast", [p + "hot"], [p + "out"], to=TensorProto.FLOAT),
        ]
        return nodes, [_const(p + "positions", np.arange(len(vocabulary), dtype=np.int64))], p + "out"
    consts = [_const(p + "impute", np.array(column.impute, dtype=np.float32))]
    nodes = [
        helper.make_node("IsNaN", [column.name], [p + "blank"]),
        helper.make_node("Where", [p + "blank", p + "impute", column.name], [p + "filled"]),
    ]
    out = p + "filled"
    if column.mean is not None and column.std is not None:
        consts += [
            _const(p + "mean", np.array(column.mean, dtype=np.float32)),
            _const(p + "std", np.array(column.std, dtype=np.float32)),
        ]
        nodes += [
            helper.make_node("Sub", [out, p + "mean"], [p + "centred"]),
            helper.make_node("Div", [p + "centred", p + "std"], [p + "scaled"]),
        ]
        out = p + "scaled"
    return nodes, consts, out


def preprocessing_graph(schema: Any, opset: int, ir_version: int, ml_opset: int = ML_OPSET) -> onnx.ModelProto:
    """Raw columns → one [-1, width] float tensor named `pre/features`."""
    nodes: list[onnx.NodeProto] = []
    consts: list[TensorProto] = []
    parts: list[str] = []
    inputs = []
    for i, column in enumerate(schema.columns):
        elem = TensorProto.STRING if column.datatype == "BYTES" else TensorProto.FLOAT
        inputs.append(helper.make_tensor_value_info(column.name, elem, [-1, 1]))
        more, values, out = _column(column, i)
        nodes += more
        consts += values
        parts.append(out)
    nodes.append(helper.make_node("Concat", parts, [FEATURES], axis=1))
    width = sum(len(c.categories) if c.kind == "category" else 1 for c in schema.columns)
    output = helper.make_tensor_value_info(FEATURES, TensorProto.FLOAT, [-1, width])
    graph = helper.make_graph(nodes, "preprocessing", inputs, [output], initializer=consts)
    opsets = [helper.make_opsetid("", opset), helper.make_opsetid(ML_DOMAIN, ml_opset)]
    return helper.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def _sorted(graph: onnx.GraphProto) -> None:
    """Order the nodes so each follows its inputs' producers (the fp16 converter appends its input casts)."""
    ready = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        left = [n for n in pending if not all(i in ready for i in n.input)]
        done = [n for n in pending if all(i in ready for i in n.input)]
        if not done:
            raise ExportError(f"the network's graph has a cycle or a dangling input at {left[0].name!r}")
        for node in done:
            ready.update(node.output)
        ordered += done
        pending = left
    del graph.node[:]
    graph.node.extend(ordered)


def preparation(schema: Any, net_bytes: bytes) -> bytes:
    """The preparation alone (raw columns → FEATURES), with the opsets the network's graph uses."""
    net = onnx.load_from_string(net_bytes)
    opset = next((o.version for o in net.opset_import if o.domain in ("", "ai.onnx")), 18)
    ml = next((o.version for o in net.opset_import if o.domain == ML_DOMAIN), ML_OPSET)
    return preprocessing_graph(schema, opset, net.ir_version, ml).SerializeToString()


def joined(schema: Any, net: onnx.ModelProto, opset: int, ml: int, prefix: str, what: str) -> onnx.ModelProto:
    """The table's preparation merged in front of `net` (FEATURES feeding its input), `net`'s names prefixed.

    `what` names the model in the error (the network, the estimator)."""
    pre = preprocessing_graph(schema, opset, net.ir_version, ml)
    del pre.opset_import[:]  # merge_models wants one version per domain: the model's (ORT adds its own)
    pre.opset_import.extend(net.opset_import)
    try:
        return compose.merge_models(pre, net, io_map=[(FEATURES, INPUT_NAME)], prefix2=prefix)
    except Exception as exc:  # onnx.compose raises ValueError and checker errors alike
        raise ExportError(f"could not join the table's preparation to the {what}: {exc}") from exc


def attach(net_bytes: bytes, schema: Any) -> bytes:
    """The network's graph (input `input`, output `logits`) inside the table's preparation and answers."""
    net = onnx.load_from_string(net_bytes)
    _sorted(net.graph)
    opset = next((o.version for o in net.opset_import if o.domain in ("", "ai.onnx")), 18)
    ml = next((o.version for o in net.opset_import if o.domain == ML_DOMAIN), None)
    if ml is None:
        net.opset_import.append(helper.make_opsetid(ML_DOMAIN, ML_OPSET))
    model = joined(schema, net, opset, ml or ML_OPSET, NET, "network")
    graph = model.graph
    raw = NET + OUTPUT_NAME
    del graph.output[:]
    if schema.task == "classification":
        graph.node.append(helper.make_node("Identity", [raw], [LOGITS]))
        graph.node.append(helper.make_node("Softmax", [raw], [PROBABILITIES], axis=-1))
        n = len(schema.classes)
        graph.output.extend(
            [
                helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, [-1, n]),
                helper.make_tensor_value_info(PROBABILITIES, TensorProto.FLOAT, [-1, n]),
            ]
        )
    else:
        assert schema.target is not None, "a regression's schema records its target"
        graph.initializer.extend(
            [
                _const("post/std", np.array(schema.target.std, dtype=np.float32)),
                _const("post/mean", np.array(schema.target.mean, dtype=np.float32)),
            ]
        )
        graph.node.append(helper.make_node("Mul", [raw, "post/std"], ["post/scaled"]))
        graph.node.append(helper.make_node("Add", ["post/scaled", "post/mean"], [PREDICTION]))
        graph.output.append(helper.make_tensor_value_info(PREDICTION, TensorProto.FLOAT, [-1, 1]))
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"the table model's graph does not check: {exc}") from exc
    return model.SerializeToString()
