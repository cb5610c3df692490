"""Dynamic batching on a model heavy enough to batch: a small ResNet on 3x64x64 inputs.

Serves it with batching on and off (FERMION_BATCHING) and drives each with wrk over loopback at
1 and 32 connections, sending one image per request as an OIP v2 binary tensor (the JSON form of
12,288 floats would measure the JSON parser, not batching). Prints `session.run` at batch 1 too.

    apt-get install wrk   # once
    .venv/bin/python bench/batching.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cold_start import free_port
from serving import serve, wrk

from fermion.compile import export_onnx
from fermion.model_store import Draft, LocalDirStore, Registry, Signature, TensorSpec


class Block(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def small_resnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 64, 3, padding=1),
        nn.ReLU(),
        Block(64),
        nn.MaxPool2d(2),
        Block(64),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, 10),
    ).eval()


def lua_body(x: np.ndarray) -> tuple[str, bytes, int]:
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "input",
                    "shape": list(x.shape),
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": x.nbytes},
                }
            ]
        }
    ).encode()
    body = header + x.astype("<f4").tobytes()
    escaped = "".join(f"\\{b}" for b in body)
    return (
        (
            f'wrk.method = "POST"\nwrk.body = "{escaped}"\n'
            f'wrk.headers["Inference-Header-Content-Length"] = "{len(header)}"\n'
        ),
        body,
        len(header),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    args = parser.parse_args()
    torch.manual_seed(0)
    module = small_resnet()
    x = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    onnx_bytes = export_onnx(module, torch.from_numpy(np.repeat(x, 2, axis=0))).onnx_bytes
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    runs = []
    for _ in range(50):
        t = time.perf_counter()
        session.run(None, {"input": x})
        runs.append(time.perf_counter() - t)
    print(f"small ResNet 3x64x64: session.run at batch 1, median {statistics.median(runs) * 1000:.2f} ms")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        sig = Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 3, 64, 64])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
        )
        Registry(LocalDirStore(home / "store"), home / "cache").register(
            "default", "resnet", {"model.onnx": onnx_bytes}, Draft(signature=sig)
        )
        script, body, header_length = lua_body(x)
        results = {}
        for batching in ("true", "false"):
            port = free_port()
            env = {
                **os.environ,
                "FERMION_HOME": str(home),
                "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
                "FERMION_BATCHING": batching,
            }
            argv = [
                sys.executable,
                "-m",
                "uvicorn",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--log-level",
                "warning",
                "--no-access-log",
                "fermion.functions.inference.app:app",
            ]
            url = f"http://127.0.0.1:{port}/v2/models/resnet/infer"
            proc = serve(argv, env, url, body, {"Inference-Header-Content-Length": str(header_length)})
            try:
                results[batching] = {c: wrk(url, script, c, args.seconds, raw_script=True) for c in (1, 32)}
            finally:
                proc.terminate()
                proc.wait(10)
    print(f"{'batching':9} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for batching, by_conns in results.items():
        for c, r in by_conns.items():
            print(f"{batching:9} {c:5d} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f}")
    on, off = results["true"][32], results["false"][32]
    print(
        f"at 32 connections: throughput {on['rps'] / off['rps']:.2f}x with batching, p99 {on['p99'] / off['p99']:.2f}x"
    )


if __name__ == "__main__":
    main()
