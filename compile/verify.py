"""Parity: run ONNX Runtime and the torch module on the same held-out inputs and compare."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import onnxruntime as ort
import torch

from .chunks import session_outputs, torch_outputs
from .errors import ParityError

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


@dataclass(frozen=True)
class ParityReport:
    """How far ONNX Runtime's outputs were from torch's, and whether they agree on the argmax."""

    max_abs_diff: float
    argmax_agreement: float
    samples: int
    atol: float
    rtol: float

    def as_dict(self) -> dict[str, float]:
        """The report as plain numbers for the manifest."""
        return {k: float(v) for k, v in asdict(self).items()}


def check_parity(
    module: torch.nn.Module,
    onnx_bytes: bytes,
    inputs: np.ndarray,
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = DEFAULT_RTOL,
    expected: np.ndarray | None = None,
) -> ParityReport:
    """Compare outputs on `inputs`; raise ParityError when any differs beyond atol + rtol·scale.

    The scale of an output is the largest |torch| value of its row (its output vector; a value of
    its own for a single output), not the value itself: float32 rounding follows the magnitude of
    what was summed, so a logit that cancels to near zero beside logits in the thousands carries
    their rounding (a differentially private federation's noisy weights do that), and an element-wise
    tolerance would refuse a faithful graph. A wrong weight still moves the row beyond it.

    `expected`: the module's outputs on `inputs`, where the caller already has them."""
    x = np.ascontiguousarray(inputs, dtype=np.float32)
    expected = torch_outputs(module, x) if expected is None else expected
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    got = session_outputs(session, session.get_inputs()[0].name, x)
    if got.shape != expected.shape:
        raise ParityError(f"ONNX output shape {got.shape} differs from torch's {expected.shape}")
    diff = np.abs(got - expected)
    report = ParityReport(
        max_abs_diff=float(diff.max(initial=0.0)),
        argmax_agreement=float((got.argmax(-1) == expected.argmax(-1)).mean()) if len(x) else 1.0,
        samples=len(x),
        atol=atol,
        rtol=rtol,
    )
    scale = np.abs(expected).max(axis=-1, keepdims=True) if expected.ndim > 1 else np.abs(expected)
    if not np.all(diff <= atol + rtol * scale) or not np.all(np.isfinite(got)):
        raise ParityError(
            f"ONNX graph disagrees with the torch model on {len(x)} held-out samples: "
            f"max |diff| = {report.max_abs_diff:.3g} (atol {atol}, rtol {rtol}); refusing to register it"
        )
    return report


def check_graph_parity(
    expected: dict[str, np.ndarray],
    onnx_bytes: bytes,
    feeds: dict[str, np.ndarray],
    *,
    atol: float = DEFAULT_ATOL,
    rtol: float = 0.0,
) -> ParityReport:
    """Compare a whole graph's named outputs on `feeds` with `expected` (the trainer's own answers).

    Each output agrees within atol + rtol x its largest magnitude (a regression's prediction is in the label's units).
    """
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    names = list(expected)
    got = dict(zip(names, session.run(names, feeds), strict=True))
    worst, agreement, rows = 0.0, 1.0, 0
    for name in names:
        want, have = expected[name], got[name]
        if have.shape != want.shape:
            raise ParityError(f"ONNX output {name!r} has shape {have.shape}; the trainer's has {want.shape}")
        diff = np.abs(have.astype(np.float64) - want.astype(np.float64))
        worst, rows = max(worst, float(diff.max(initial=0.0))), len(want)
        if want.shape[-1] > 1 and len(want):
            agreement = min(agreement, float((have.argmax(-1) == want.argmax(-1)).mean()))
        scale = float(np.abs(want).max(initial=0.0))  # rtol of the output's size, not of each value near 0
        if not np.all(diff <= atol + rtol * scale) or not np.all(np.isfinite(have)):
            raise ParityError(
                f"the table model's graph disagrees with the trainer on {len(want)} rows ({name}): "
                f"max |diff| = {float(diff.max(initial=0.0)):.3g} (atol {atol}, rtol {rtol}); refusing to register it"
            )
    return ParityReport(max_abs_diff=worst, argmax_agreement=agreement, samples=rows, atol=atol, rtol=rtol)
