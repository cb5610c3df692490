"""Export to ONNX with a dynamic batch axis, and a parity check that refuses a broken export."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from fermion.compile import ExportError, ParityError, check_parity, export_onnx


def _mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3)).eval()


def test_export_has_a_dynamic_batch_axis_and_matches_torch() -> None:
    module = _mlp()
    exported = export_onnx(module, torch.zeros(2, 8))
    assert exported.exporter in ("torchscript", "dynamo")
    session = ort.InferenceSession(exported.onnx_bytes, providers=["CPUExecutionProvider"])
    for batch in (1, 7, 64):
        x = np.random.default_rng(batch).normal(size=(batch, 8)).astype(np.float32)
        (out,) = session.run(None, {"input": x})
        assert out.shape == (batch, 3)
    report = check_parity(module, exported.onnx_bytes, np.random.default_rng(0).normal(size=(50, 8)))
    assert report.max_abs_diff < 1e-4
    assert report.argmax_agreement == 1.0


def test_parity_check_refuses_a_broken_export() -> None:
    module = _mlp()
    model = onnx.load_from_string(export_onnx(module, torch.zeros(2, 8)).onnx_bytes)
    # Corrupt one weight of the exported graph, as a faulty exporter or a bad file would.
    init = model.graph.initializer[0]
    broken = numpy_helper.to_array(init).copy()
    broken.flat[0] += 0.5
    init.CopyFrom(numpy_helper.from_array(broken, init.name))
    with pytest.raises(ParityError, match="disagrees with the torch model"):
        check_parity(module, model.SerializeToString(), np.random.default_rng(0).normal(size=(50, 8)))


class _SVD(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svd(x.reshape(-1, 2, 2)).S.reshape(x.shape[0], -1)


def test_an_export_both_exporters_refuse_names_the_operator() -> None:
    with pytest.raises(ExportError, match=r"unsupported operator\(s\) .*linalg_svd") as info:
        export_onnx(_SVD(), torch.randn(2, 4))
    assert "torchscript:" in str(info.value) and "dynamo:" in str(info.value)


def _large_logits(x0: np.ndarray) -> torch.nn.Module:
    """Logits in the thousands, the first one cancelling to near zero on `x0` (as noisy DP weights give)."""
    torch.manual_seed(1)
    module = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.ReLU(), torch.nn.Linear(64, 3)).eval()
    with torch.no_grad():
        for layer in (module[0], module[2]):
            layer.weight.mul_(40.0)
        module[2].bias[0] -= module(torch.from_numpy(x0[None]))[0, 0]
    return module


def _nudged(module: torch.nn.Module, relative: float) -> torch.nn.Module:
    """The same module with every weight moved by `relative` of itself: the graph a torch model rounds to."""
    import copy

    other = copy.deepcopy(module)
    with torch.no_grad():
        for p in other.parameters():
            p.mul_(1 + relative)
    return other


def test_parity_is_judged_against_the_scale_of_each_output_row() -> None:
    x = np.random.default_rng(3).normal(size=(200, 8)).astype(np.float32)
    module = _large_logits(x[0])
    graph = export_onnx(module, torch.zeros(2, 8)).onnx_bytes
    rounded = _nudged(module, 1e-6)  # differences the size of float32 rounding at this scale
    with torch.no_grad():
        out, near = module(torch.from_numpy(x)).numpy(), rounded(torch.from_numpy(x)).numpy()
    assert np.abs(out[0, 0]) < 0.01 and np.abs(out[0]).max() > 100  # a logit near zero in a large row
    assert abs(near[0, 0] - out[0, 0]) > 1e-4 + 1e-3 * abs(out[0, 0])  # which an element-wise rule refuses
    report = check_parity(rounded, graph, x)
    assert report.max_abs_diff > 1e-4
    with pytest.raises(ParityError):  # a real difference (0.5% of every weight) does not
        check_parity(_nudged(module, 5e-3), graph, x)
