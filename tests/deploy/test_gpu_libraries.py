"""The GPU image's provider libraries resolve against its pinned CUDA/cuDNN wheels (on a CPU machine).

The pinned wheels are installed into a temporary directory, onnxruntime.preload_dlls() loads the
CUDA and cuDNN libraries from there (as infra/docker/gpu_entry.py does), and ONNX Runtime's CUDA
provider library is dlopen'ed: every library it needs must then resolve except the driver's
libcuda.so.1, which only a machine with an NVIDIA driver has ("no device").

The wheels are gigabytes, so this runs only when their wheelhouse exists:
`FERMION_IMAGE_WHEELS=all ./scripts/setup` (or `python -m fermion.infra.wheelhouse download inference-gpu`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from fermion.infra import wheelhouse

IMAGE = wheelhouse.by_name("inference-gpu")
pytestmark = [
    pytest.mark.deploy,
    pytest.mark.skipif(
        not (wheelhouse.wheelhouse(IMAGE) / ".fermion-complete").exists(),
        reason="the CUDA wheels are gigabytes: FERMION_IMAGE_WHEELS=all ./scripts/setup downloads them",
    ),
]

PROBE = """
import ctypes, json, os, sys
sys.path.insert(0, sys.argv[1])
import onnxruntime
onnxruntime.preload_dlls(directory="")
capi = os.path.join(os.path.dirname(onnxruntime.__file__), "capi")
result = {"version": onnxruntime.__version__}
for provider in ("cuda", "tensorrt"):
    path = os.path.join(capi, f"libonnxruntime_providers_{provider}.so")
    try:
        ctypes.CDLL(path)
        result[provider] = "loaded"
    except OSError as exc:
        result[provider] = str(exc)
with open("/proc/self/maps") as maps:
    result["mapped"] = sorted({line.split("/")[-1].strip() for line in maps if "/nvidia/" in line})
print(json.dumps(result))
"""


def _needed(library: Path) -> list[str]:
    out = subprocess.run(["readelf", "-d", str(library)], capture_output=True, text=True, timeout=30, check=True)
    return [line.split("[")[1].rstrip("]") for line in out.stdout.splitlines() if "(NEEDED)" in line]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("gpu") / "site"
    cmd = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--target", str(site)]
    cmd += ["--find-links", str(wheelhouse.wheelhouse(IMAGE)), *IMAGE.pip_target_args()]
    done = subprocess.run([*cmd, "-r", str(IMAGE.requirements_path)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return site


@pytest.mark.timeout(600)
def test_cuda_provider_resolves_all_but_the_driver(site: Path) -> None:
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(site)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    # Only the driver is missing: the CUDA runtime, cuBLAS, cuRAND and cuDNN came from the wheels.
    assert result["cuda"] == "loaded" or "libcuda.so.1" in result["cuda"], result["cuda"]
    capi = site / "onnxruntime" / "capi"
    wanted = set(_needed(capi / "libonnxruntime_providers_cuda.so")) - {"libcuda.so.1"}
    system = {"libdl.so.2", "librt.so.1", "libpthread.so.0", "libstdc++.so.6", "libm.so.6", "libgcc_s.so.1"}
    system |= {"libc.so.6", "ld-linux-x86-64.so.2"}
    missing = wanted - system - set(result["mapped"])
    assert not missing, f"not preloaded from the pinned wheels: {sorted(missing)}"
    assert "libcudnn.so.9" in result["mapped"]  # the TensorRT and CUDA providers' convolution library


@pytest.mark.timeout(600)
def test_tensorrt_provider_needs_only_tensorrt_10_beyond_the_cuda_wheels(site: Path) -> None:
    """TensorRT 10 (libnvinfer.so.10) is on NVIDIA's index only, which is not reachable here: what
    is left is exactly what requirements/tensorrt.txt pins, and the CUDA part resolves."""
    needed = set(_needed(site / "onnxruntime" / "capi" / "libonnxruntime_providers_tensorrt.so"))
    assert {"libnvinfer.so.10", "libnvonnxparser.so.10"} <= needed
    assert "tensorrt-cu13-libs==10." in (wheelhouse.REQUIREMENTS_DIR / "tensorrt.txt").read_text()
    out = subprocess.run([sys.executable, "-S", "-c", PROBE, str(site)], capture_output=True, text=True, timeout=120)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["tensorrt"] == "loaded" or "libnvinfer.so.10" in result["tensorrt"], result["tensorrt"]
    mapped = set(result["mapped"])
    cuda_part = needed - {"libnvinfer.so.10", "libnvonnxparser.so.10", "libcuda.so.1"}
    assert {n for n in cuda_part if n.startswith(("libcu", "libcudnn"))} <= mapped
