"""GPU beside CPU: the same models on each execution provider a session really gets here.

For the digits CNN and the batching benchmark's two models (`batching.py`), prints `session.run`
medians at batch 1 and 32 on CPU, CUDA (fp32 and the fp16 variant) and TensorRT, then serves the
LSTM through the inference entry point on the best GPU provider and on CPU and drives both with wrk
at 1 and 32 connections. A provider that is not usable here (no GPU, libraries missing) is
reported as such and skipped; the script never claims a provider its session did not get.

    .venv/bin/python bench/gpu.py [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from batching import MODELS, lua_body
from common import bench_key, bench_registry, fermion_argv, free_port, run_ms, serve, stop, wrk

from fermion.compile import convert_fp16, export_onnx
from fermion.model_store import Draft, Signature, TensorSpec
from fermion.training.architectures import build

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def session(model: bytes, kind: str, cache: Path) -> ort.InferenceSession | None:
    """A session on `kind`, or None when the session would not really run there."""
    wanted = PROVIDERS[kind]
    if wanted[0] not in ort.get_available_providers():
        return None
    trt = {"trt_engine_cache_enable": "True", "trt_engine_cache_path": str(cache)}
    options = [trt if p.startswith("Tensorrt") else {} for p in wanted]
    s = ort.InferenceSession(model, providers=wanted, provider_options=options)
    return s if s.get_providers()[0] == wanted[0] else None


def models() -> dict[str, tuple[bytes, np.ndarray]]:
    """name: (ONNX bytes, one input row)."""
    torch.manual_seed(0)
    out = {}
    digits = build("cnn", np.random.default_rng(0).random((32, 64)).astype(np.float32), 10)
    x = np.random.default_rng(1).random((1, 64)).astype(np.float32)
    out["digits CNN"] = (export_onnx(digits.eval(), torch.from_numpy(np.repeat(x, 2, 0))).onnx_bytes, x)
    for name, (_, make, shape) in MODELS.items():
        x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
        out[name] = (export_onnx(make().eval(), torch.from_numpy(np.repeat(x, 2, 0))).onnx_bytes, x)
    return out


def main() -> None:
    ort.set_default_logger_severity(4)  # probing providers that may be absent; usability is reported below
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        print(f"{'model':12} {'provider':14} {'batch 1 ms':>11} {'batch 32 ms':>12}")
        usable: set[str] = {"cpu"}
        built = models()
        for name, (onnx_bytes, x) in built.items():
            for kind in PROVIDERS:
                variants = [("fp32", onnx_bytes)] + ([("fp16", convert_fp16(onnx_bytes))] if kind != "cpu" else [])
                for variant, model in variants:
                    s = session(model, kind, home / "trt")
                    if s is None:
                        print(f"{name:12} {kind:14} not usable here (no GPU, or its libraries are missing)")
                        break
                    usable.add(kind)
                    one, many = run_ms(s, x, 50), run_ms(s, np.repeat(x, 32, 0), 20)
                    print(f"{name:12} {kind + ' ' + variant:14} {one:11.3f} {many:12.3f}")
        if not shutil.which("wrk"):
            sys.exit("wrk is not installed: apt-get install wrk")
        onnx_bytes, x = built["lstm"]
        sig = Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, *x.shape[1:]])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 4])],
        )
        bench_registry(home).register("default", "lstm", {"model.onnx": onnx_bytes}, Draft(signature=sig))
        script, body, header_length = lua_body(x)
        auth = bench_key(home)
        best = next((k for k in ("tensorrt", "cuda") if k in usable), None)
        print(f"\nLSTM served, one input per request (OIP binary tensor), batching on, wrk {args.seconds}s per point")
        for kind in ("cpu", best) if best else ("cpu",):
            port = free_port()
            env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": json.dumps(PROVIDERS[kind])}
            url = f"http://127.0.0.1:{port}/v2/models/lstm/infer"
            proc = serve(
                fermion_argv(port), env, url, body, {"Inference-Header-Content-Length": str(header_length), **auth}
            )
            try:
                wrk(url, script, 32, 1, raw_script=True, headers=auth)  # warm-up (and TensorRT's engine build)
                for c in (1, 32):
                    r = wrk(url, script, c, args.seconds, raw_script=True, headers=auth)
                    print(
                        f"  {kind:9} {c:3d} conns: p50 {r['p50']:.2f} ms  p99 {r['p99']:.2f} ms  {r['rps']:.0f} req/s"
                    )
            finally:
                stop(proc)
        if not best:
            print("  (no GPU provider is usable here: only CPU was measured)")


if __name__ == "__main__":
    main()
