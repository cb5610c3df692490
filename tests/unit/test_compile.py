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
