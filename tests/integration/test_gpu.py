"""The CUDA and TensorRT execution providers on a real GPU; skipped where there is none.

On a CPU machine the fallback path is what `tests/unit/test_inference.py` proves (flag, loud log,
`require_gpu` refusal); here the sessions must really land on the GPU and agree with the CPU.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fermion.compile import convert_fp16
from fermion.functions.inference.runtime import ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import LocalDirStore, Registry
from tests.helpers import linear_draft, linear_onnx

pytestmark = [pytest.mark.gpu, pytest.mark.integration]


@functools.cache
def _usable(provider: str) -> bool:
    """Whether a session asked for `provider` really gets it (onnxruntime-gpu lists CUDA without a GPU)."""
    if provider not in ort.get_available_providers() or not Path("/dev/nvidiactl").exists():
        return False
    session = ort.InferenceSession(linear_onnx(), providers=[provider, "CPUExecutionProvider"])
    return session.get_providers()[0] == provider


def _needs(provider: str) -> None:
    if not _usable(provider):
        pytest.skip(f"no usable {provider} here (no GPU, or its libraries are missing)")


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    return Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")


def _cpu_reference(onnx: bytes, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(onnx, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]


def test_a_cuda_session_is_on_the_gpu_and_agrees_with_the_cpu(registry: Registry, tmp_path: Path) -> None:
    _needs("CUDAExecutionProvider")
    onnx = linear_onnx(n_in=64, n_out=8, seed=3)
    registry.register("default", "lin", {"model.onnx": onnx}, linear_draft(64, 8))
    settings = InferenceSettings(
        home=tmp_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"], variant="fp32", require_gpu=True
    )
    model = ModelRuntime(registry, settings).get(ModelRef("lin"))
    assert model.providers[0] == "CUDAExecutionProvider" and not model.gpu_fallback
    x = np.random.default_rng(0).normal(size=(16, 64)).astype(np.float32)
    np.testing.assert_allclose(model.run({"input": x})["logits"], _cpu_reference(onnx, x), rtol=1e-3, atol=1e-3)


def test_auto_picks_fp16_on_the_gpu(registry: Registry, tmp_path: Path) -> None:
    _needs("CUDAExecutionProvider")
    onnx = linear_onnx(n_in=64, n_out=8, seed=4)
    fp16 = convert_fp16(onnx)
    draft = linear_draft(64, 8).model_copy(update={"variants": {"fp32": "model.onnx", "fp16": "model.fp16.onnx"}})
    registry.register("default", "lin", {"model.onnx": onnx, "model.fp16.onnx": fp16}, draft)
    settings = InferenceSettings(home=tmp_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
    model = ModelRuntime(registry, settings).get(ModelRef("lin"))
    assert (model.variant, model.providers[0]) == ("fp16", "CUDAExecutionProvider")
    x = np.random.default_rng(1).normal(size=(4, 64)).astype(np.float32)
    out = model.run({"input": x})["logits"]
    assert out.dtype == np.float32  # keep_io_types: the served signature is unchanged
    np.testing.assert_allclose(out, _cpu_reference(onnx, x), rtol=2e-2, atol=2e-2)


def test_tensorrt_builds_and_caches_its_engine(registry: Registry, tmp_path: Path) -> None:
    _needs("TensorrtExecutionProvider")
    onnx = linear_onnx(n_in=64, n_out=8, seed=5)
    registry.register("default", "lin", {"model.onnx": onnx}, linear_draft(64, 8))
    cache = tmp_path / "trt"
    settings = InferenceSettings(
        home=tmp_path,
        providers=["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
        variant="fp32",
        trt_cache_dir=str(cache),
    )
    model = ModelRuntime(registry, settings).get(ModelRef("lin"))
    assert model.providers[0] == "TensorrtExecutionProvider" and not model.gpu_fallback
    x = np.random.default_rng(2).normal(size=(8, 64)).astype(np.float32)
    np.testing.assert_allclose(model.run({"input": x})["logits"], _cpu_reference(onnx, x), rtol=1e-2, atol=1e-2)
    assert any(cache.iterdir()), "TensorRT wrote no engine or timing cache"
