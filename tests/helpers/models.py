"""Tiny real ONNX models built without torch, and the manifest drafts that describe them."""

from __future__ import annotations

import io

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from fermion.model_store import Draft, Lineage, Signature, TensorSpec


def linear_onnx(n_in: int = 4, n_out: int = 3, seed: int = 0) -> bytes:
    """A real ONNX model (y = x·W + b, dynamic batch) built without torch."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        [w, b],
    )
    return model_bytes(graph)


def model_bytes(graph: onnx.GraphProto, *, ml: bool = False) -> bytes:
    """A graph as a checked ONNX model file (opset 18, IR 9: what every ONNX Runtime here loads); `ml`: ONNX-ML too."""
    opsets = [helper.make_opsetid("", 18)] + ([helper.make_opsetid("ai.onnx.ml", 3)] if ml else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 9
    onnx.checker.check_model(model)
    buf = io.BytesIO()
    onnx.save(model, buf)
    return buf.getvalue()


def linear_draft(n_in: int = 4, n_out: int = 3, lineage: Lineage | None = None) -> Draft:
    """A manifest draft matching `linear_onnx`."""
    return Draft(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, n_in])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, n_out])],
        ),
        labels=[str(i) for i in range(n_out)],
        metrics={"accuracy": 0.5},
        lineage=lineage or Lineage(),
    )
