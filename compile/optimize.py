"""ONNX Runtime's own tools: offline graph optimisation, int8 quantisation, fp16 conversion.

Each takes and returns ONNX bytes; none knows about torch. Parity against torch is verify.py's job.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic, quantize_static
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from .export import INPUT_NAME


def optimize_fp32(model: bytes) -> bytes:
    """Constant folding and redundant-node elimination, saved: BASIC level, portable across providers.

    ORT's EXTENDED and ALL levels fuse nodes into provider-specific kernels (CPU NCHWc layouts,
    for one), so a graph saved at those levels may not load on CUDA or TensorRT.
    """
    with tempfile.TemporaryDirectory(prefix="fermion-opt-") as tmp:
        out = Path(tmp) / "optimized.onnx"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        options.optimized_model_filepath = str(out)
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return out.read_bytes()


class _Calibration(CalibrationDataReader):
    def __init__(self, data: np.ndarray, batch: int = 32) -> None:
        self._batches: Iterator[dict[str, np.ndarray]] = iter(
            {INPUT_NAME: np.ascontiguousarray(data[i : i + batch], dtype=np.float32)}
            for i in range(0, len(data), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def has_convolutions(model: bytes) -> bool:
    """Whether the graph has Conv nodes (static quantisation with calibration suits those better)."""
    return any(n.op_type == "Conv" for n in onnx.load_from_string(model).graph.node)


def quantize_int8(model: bytes, calibration: np.ndarray | None = None) -> tuple[bytes, str]:
    """int8 weights: static QDQ with calibration data for convolutional graphs, dynamic otherwise.

    Returns the quantised graph and the method used ("static-qdq" or "dynamic").
    """
    with tempfile.TemporaryDirectory(prefix="fermion-q-") as tmp:
        src, pre, out = (Path(tmp) / n for n in ("in.onnx", "pre.onnx", "out.onnx"))
        src.write_bytes(model)
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)
        if calibration is not None and len(calibration) and has_convolutions(model):
            quantize_static(
                str(pre),
                str(out),
                _Calibration(calibration),
                quant_format=QuantFormat.QDQ,
                weight_type=QuantType.QInt8,
                activation_type=QuantType.QUInt8,
                per_channel=True,
            )
            return out.read_bytes(), "static-qdq"
        quantize_dynamic(str(pre), str(out), weight_type=QuantType.QInt8)
        return out.read_bytes(), "dynamic"


def convert_fp16(model: bytes) -> bytes:
    """fp16 weights and compute, fp32 inputs and outputs kept, so the served signature is unchanged."""
    converted = convert_float_to_float16(onnx.load_from_string(model), keep_io_types=True)
    return converted.SerializeToString()
