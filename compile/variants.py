"""Compile once per training: the fp32, int8 and fp16 variants, each proven against the torch model.

A variant whose held-out accuracy falls more than the budget below torch's is not registered;
the compile report says why. Every variant records its size, parity and CPU latency.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import torch

from .chunks import session_outputs, torch_outputs
from .errors import ParityError
from .export import INPUT_NAME, Exported, export_onnx
from .optimize import convert_fp16, optimize_fp32, quantize_int8
from .verify import check_parity

VARIANT_FILES = {"fp32": "model.onnx", "int8": "model.int8.onnx", "fp16": "model.fp16.onnx"}
"""The registry reads these names too (model_store.manifest.VARIANT_FILES, held equal by a test)."""
DEFAULT_BUDGET = 0.01  # one accuracy point


@dataclass
class Compiled:
    """The variants that passed, their bytes by file name, and the compile report."""

    files: dict[str, bytes]
    report: dict[str, Any]
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(logits.argmax(axis=1) == y))


def cpu_latency_ms(model: bytes, n_features: int | tuple[int, ...], batch: int, runs: int = 50) -> float:
    """Median `session.run` time on the CPU provider, in milliseconds (`n_features`: one row's shape)."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    row = (n_features,) if isinstance(n_features, int) else tuple(n_features)
    x = np.random.default_rng(0).normal(size=(batch, *row)).astype(np.float32)
    session.run(None, {INPUT_NAME: x})
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, {INPUT_NAME: x})
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 4)


def compile_variants(
    module: torch.nn.Module,
    x_holdout: np.ndarray,
    y_holdout: np.ndarray,
    *,
    calibration: np.ndarray,
    budget: float = DEFAULT_BUDGET,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> Compiled:
    """Export, prove the fp32 graph exactly, then build and judge the int8 and fp16 variants."""
    x = np.ascontiguousarray(x_holdout, dtype=np.float32)
    exported: Exported = export_onnx(module, torch.from_numpy(x[:2]))
    fp32 = optimize_fp32(exported.onnx_bytes)
    expected = torch_outputs(module, x)  # once, for the parity check and every variant's judgement
    parity = check_parity(module, fp32, x, atol=atol, rtol=rtol, expected=expected)  # ParityError otherwise
    torch_acc = _accuracy(expected, y_holdout)
    n_features = tuple(x.shape[1:])
    report: dict[str, Any] = {
        "exporter": exported.exporter,
        "opset": exported.opset,
        "node_count": exported.node_count,
        "optimized_node_count": len(onnx.load_from_string(fp32).graph.node),
        "parity": parity.as_dict(),
        "accuracy_budget": budget,
        "torch_accuracy": torch_acc,
        "variants": {},
        "refused": {},
    }
    files = {VARIANT_FILES["fp32"]: fp32}
    candidates: dict[str, tuple[bytes, dict[str, Any]]] = {"fp32": (fp32, {"optimization": "ort-basic"})}
    try:
        int8, method = quantize_int8(fp32, calibration)
        candidates["int8"] = (int8, {"quantization": method})
    except Exception as exc:  # ORT's quantiser raises many types; a failed variant is reported, not fatal
        report["refused"]["int8"] = f"quantisation failed: {type(exc).__name__}: {exc}"
    try:
        candidates["fp16"] = (convert_fp16(fp32), {"conversion": "float16, fp32 io"})
    except Exception as exc:  # as above
        report["refused"]["fp16"] = f"fp16 conversion failed: {type(exc).__name__}: {exc}"
    for name, (data, extra) in candidates.items():
        try:
            entry = _judge(expected, data, x, y_holdout, torch_acc, budget, exact=name == "fp32")
        except ParityError as exc:
            report["refused"][name] = str(exc)
            continue
        entry.update(
            extra,
            file=VARIANT_FILES[name],
            size=len(data),
            cpu_latency_ms={
                "batch1": cpu_latency_ms(data, n_features, 1),
                "batch32": cpu_latency_ms(data, n_features, 32),
            },
        )
        report["variants"][name] = entry
        files[VARIANT_FILES[name]] = data
    return Compiled(files, report, report["variants"])


def _judge(
    expected: np.ndarray,
    model: bytes,
    x: np.ndarray,
    y: np.ndarray,
    torch_acc: float,
    budget: float,
    *,
    exact: bool = False,
) -> dict[str, Any]:
    """Accuracy and parity of a variant against torch's `expected` outputs; ParityError past the budget
    (`exact`: already proven, kept)."""
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    got = session_outputs(session, INPUT_NAME, x)
    acc = _accuracy(got, y)
    drop = torch_acc - acc
    entry = {
        "accuracy": acc,
        "accuracy_delta": round(acc - torch_acc, 6),
        "max_abs_diff": float(np.abs(got - expected).max(initial=0.0)),
        "argmax_agreement": float(np.mean(got.argmax(1) == expected.argmax(1))),
    }
    if drop > budget and not exact:
        raise ParityError(
            f"accuracy {acc:.4f} is {drop * 100:.2f} points below torch's {torch_acc:.4f}; "
            f"the budget is {budget * 100:.2f} points"
        )
    return entry
