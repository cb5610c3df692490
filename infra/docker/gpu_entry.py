"""The GPU inference image's entry point: preload the CUDA/cuDNN libraries, then start the function.

ONNX Runtime's CUDA and TensorRT providers dlopen libcublas.so.13, libcudnn.so.9 and friends by
soname; the pip-installed copies live under site-packages/nvidia/, off the loader's path.
onnxruntime.preload_dlls() loads them into the process first, so the providers' dlopen finds them
already loaded. TensorRT's libraries (tensorrt_libs/) are loaded the same way.
"""

import ctypes
import runpy
import sys
from pathlib import Path

import onnxruntime

onnxruntime.preload_dlls(directory="")
try:
    import tensorrt_libs  # type: ignore[import-not-found]

    for name in ("libnvinfer.so.10", "libnvinfer_plugin.so.10", "libnvonnxparser.so.10"):
        ctypes.CDLL(str(Path(tensorrt_libs.__path__[0]) / name), mode=ctypes.RTLD_GLOBAL)
except (ImportError, OSError) as exc:  # TensorRT is optional: CUDA then CPU still serve
    print(f"TensorRT libraries not loaded: {exc}", file=sys.stderr)

sys.argv[0] = "fermion.functions.inference"
runpy.run_module("fermion.functions.inference", run_name="__main__", alter_sys=True)
