"""Edge bundles: prune, fine-tune, quantise, convert to ORT format, judge against budgets, pack and sign.

Pruning is `torch.nn.utils.prune` (global L1, unstructured) over every Conv and Linear weight. With
the torch module and its training data it is followed by a short fine-tune under the pruning masks;
without them the same pruning runs on the ONNX graph's weight initializers (no fine-tune). Zeros
stay zeros through int8 quantisation (the weights' zero-point is 0) and cost almost nothing once
the bundle is compressed. A bundle whose accuracy falls more than the budget below the served
version's, or whose archive is over the size budget, is refused with the reason.
"""

from __future__ import annotations

import hashlib
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn
from torch.nn.utils import prune

from .bundle import Signer, gzip_member, pack, runner_files
from .errors import CompileError
from .export import export_onnx
from .optimize import optimize_fp32, quantize_int8

Format = Literal["onnx", "ort"]
_WEIGHT_OPS = {"Conv", "Gemm", "MatMul"}  # their second input is the weight


class BudgetExceeded(CompileError):
    """The bundle is too degraded (accuracy) or too large (size); the message gives the figures."""


@dataclass(frozen=True)
class EdgeOptions:
    """What to do to the model, and what the result must still achieve."""

    prune: float = 0.0
    quantize: Literal["none", "int8"] = "none"
    format: Format = "ort"
    accuracy_budget: float | None = 0.01
    """Largest accuracy drop against the served version; None exports without measuring."""
    max_bytes: int | None = None
    finetune_epochs: int = 3


@dataclass(frozen=True)
class EdgeData:
    """The run's data: training rows (fine-tune, calibration) and held-out rows (accuracy)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@dataclass
class EdgeBundle:
    """The signed archive and what went into it."""

    archive: bytes
    manifest: dict[str, Any]
    steps: list[str] = field(default_factory=list)


def _prunable(module: nn.Module) -> list[tuple[nn.Module, str]]:
    return [(m, "weight") for m in module.modules() if isinstance(m, nn.Conv2d | nn.Conv1d | nn.Linear)]


def prune_module(module: nn.Module, amount: float) -> None:
    """Zero the `amount` smallest-magnitude weights across every Conv and Linear (masks stay attached)."""
    prune.global_unstructured(_prunable(module), pruning_method=prune.L1Unstructured, amount=amount)


def finetune(module: nn.Module, data: EdgeData, *, epochs: int, lr: float = 5e-4, seed: int = 0) -> None:
    """A short fine-tune under the pruning masks, then make the pruning permanent."""
    torch.manual_seed(seed)
    opt = torch.optim.AdamW(module.parameters(), lr=lr)
    x, y = torch.from_numpy(np.ascontiguousarray(data.x_train)), torch.from_numpy(data.y_train.astype(np.int64))
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        module.train()
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(order), 64):
            batch = order[start : start + 64]
            opt.zero_grad()
            loss_fn(module(x[batch]), y[batch]).backward()
            opt.step()
    for m, name in _prunable(module):
        if prune.is_pruned(m):
            prune.remove(m, name)
    module.eval()


def load_onnx_weights(module: nn.Module, model: bytes) -> bool:
    """Copy the graph's initializers into `module` by state-dict name; False when they do not all match."""
    inits = {i.name: i for i in onnx.load_from_string(model).graph.initializer}
    state = module.state_dict()
    if not all(k in inits and tuple(inits[k].dims) == tuple(v.shape) for k, v in state.items()):
        return False
    module.load_state_dict({k: torch.from_numpy(numpy_helper.to_array(inits[k]).copy()) for k in state})
    return True


def _weight_names(proto: onnx.ModelProto) -> set[str]:
    return {n.input[1] for n in proto.graph.node if n.op_type in _WEIGHT_OPS and len(n.input) > 1}


class _Weight(nn.Module):
    """One weight initializer as a module, so that torch's pruning can act on it."""

    def __init__(self, array: np.ndarray) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.from_numpy(array.copy()))


def prune_onnx(model: bytes, amount: float) -> bytes:
    """`torch.nn.utils.prune` on the graph's weight initializers themselves (when no torch module is at hand)."""
    proto = onnx.load_from_string(model)
    weights = _weight_names(proto)
    inits = [t for t in proto.graph.initializer if t.name in weights and len(t.dims) >= 2]
    holders = [_Weight(numpy_helper.to_array(t)) for t in inits]
    if holders:
        prune.global_unstructured([(h, "weight") for h in holders], pruning_method=prune.L1Unstructured, amount=amount)
    for t, h in zip(inits, holders, strict=True):
        t.CopyFrom(numpy_helper.from_array(h.weight.detach().numpy().astype(np.float32), t.name))
    return proto.SerializeToString()


def to_ort(model: bytes) -> bytes:
    """ONNX Runtime's ORT format (flatbuffers, for minimal builds), optimised for the CPU provider.

    EXTENDED fuses the int8 QDQ pairs into integer kernels (QLinearConv, ...), which an ORT-format
    model cannot do at load; ALL would also bake in this machine's vector width (NCHWc), so not that.
    """
    with tempfile.TemporaryDirectory(prefix="fermion-ort-") as tmp:
        out = Path(tmp) / "model.ort"
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(out)
        options.add_session_config_entry("session.save_model_format", "ORT")
        ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        return out.read_bytes()


def session(model: bytes, fmt: Format = "onnx") -> ort.InferenceSession:
    """A CPU session on ONNX or ORT-format bytes."""
    options = ort.SessionOptions()
    if fmt == "ort":
        options.add_session_config_entry("session.load_model_format", "ORT")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def accuracy(model: bytes, x: np.ndarray, y: np.ndarray, fmt: Format = "onnx") -> float:
    """Held-out accuracy of arg-max predictions."""
    s = session(model, fmt)
    logits = s.run(None, {s.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    return float(np.mean(logits.argmax(axis=1) == y))


def latency_ms(model: bytes, row: tuple[int, ...], batch: int, fmt: Format = "onnx", runs: int = 50) -> float:
    """Median CPU `session.run` time in milliseconds, on `batch` random inputs of shape `row` each."""
    s = session(model, fmt)
    feed = {s.get_inputs()[0].name: np.random.default_rng(0).normal(size=(batch, *row)).astype(np.float32)}
    s.run(None, feed)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        s.run(None, feed)
        times.append(time.perf_counter() - started)
    return round(statistics.median(times) * 1000, 4)


def sparsity(model: bytes) -> float:
    """The fraction of zero weights over every Conv/Gemm/MatMul weight initializer."""
    proto = onnx.load_from_string(model)
    weights = _weight_names(proto)
    arrays = [numpy_helper.to_array(t) for t in proto.graph.initializer if t.name in weights and len(t.dims) >= 2]
    total = sum(a.size for a in arrays)
    return round(float(sum((a == 0).sum() for a in arrays)) / total, 4) if total else 0.0


def _measure(fp32: bytes, model: bytes, fmt: Format, data: EdgeData | None, budget: float | None) -> dict[str, Any]:
    if data is None:
        if budget is not None:
            raise BudgetExceeded(
                "cannot measure the bundle's accuracy: the run's dataset is not in the store; "
                "export without an accuracy budget to ship it unmeasured"
            )
        return {"measured": False}
    served = accuracy(fp32, data.x_test, data.y_test)
    got = accuracy(model, data.x_test, data.y_test, fmt)
    if budget is not None and served - got > budget:
        raise BudgetExceeded(
            f"accuracy {got:.4f} is {(served - got) * 100:.2f} points below the served version's {served:.4f}; "
            f"the budget is {budget * 100:.2f} points"
        )
    return {
        "measured": True,
        "served": served,
        "bundle": got,
        "delta": round(got - served, 6),
        "budget": budget,
        "samples": len(data.y_test),
    }


def build_bundle(
    fp32: bytes,
    *,
    contract: dict[str, Any],
    source: dict[str, Any],
    options: EdgeOptions,
    sign: Signer,
    module: nn.Module | None = None,
    data: EdgeData | None = None,
) -> EdgeBundle:
    """Derive the edge model from the served fp32 graph, judge it, and pack it with the runner, signed."""
    model, report = fp32, dict[str, dict[str, Any]]()
    if options.prune > 0:
        if module is not None and data is not None:
            prune_module(module, options.prune)
            finetune(module, data, epochs=options.finetune_epochs)
            report["prune"] = {"finetune_epochs": options.finetune_epochs, "on": "torch module"}
            model = optimize_fp32(export_onnx(module, torch.from_numpy(data.x_test[:2])).onnx_bytes)
        else:
            model = prune_onnx(fp32, options.prune)
            report["prune"] = {"finetune_epochs": 0, "on": "ONNX initializers (no torch module or data)"}
        report["prune"].update(method="torch.nn.utils.prune global L1 unstructured", amount=options.prune)
        report["prune"]["sparsity"] = sparsity(model)
    if options.quantize == "int8":
        model, method = quantize_int8(model, data.x_train[:512] if data is not None else None)
        report["quantize"] = {"type": "int8", "method": method, "tool": "onnxruntime.quantization"}
    if options.format == "ort":
        model = to_ort(model)
    measured = _measure(fp32, model, options.format, data, options.accuracy_budget)
    row = tuple(int(d) for d in contract["input"]["shape"][1:])  # one row of features, or one picture (H, W, C)
    model_file = f"model.{options.format}.gz"
    manifest = {
        "format": "fermion-edge-bundle",
        "format_version": 1,
        "source": source,
        "model": {
            "file": model_file,
            "format": options.format,
            "compression": "gzip",
            "size": len(model),
            "sha256": hashlib.sha256(model).hexdigest(),
        },
        "contract": contract,
        "optimisations": report,
        "accuracy": measured,
        "sizes": {
            "served_fp32_bytes": len(fp32),
            "model_bytes": len(model),
            "ratio_vs_served": round(len(fp32) / len(model), 3),
        },
        "cpu_latency_ms": {
            "served_fp32": {"batch1": latency_ms(fp32, row, 1), "batch32": latency_ms(fp32, row, 32)},
            "bundle": {
                "batch1": latency_ms(model, row, 1, options.format),
                "batch32": latency_ms(model, row, 32, options.format),
            },
        },
        "runner": {"module": "fermion_edge", "requires": ["onnxruntime", "numpy"]},
    }
    archive = pack({model_file: gzip_member(model), **runner_files()}, manifest, sign)
    if options.max_bytes is not None and len(archive) > options.max_bytes:
        raise BudgetExceeded(f"the bundle is {len(archive)} bytes; the size budget is {options.max_bytes}")
    return EdgeBundle(archive, manifest)
