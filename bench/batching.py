"""Dynamic batching on models heavy enough to batch (batch-1 `session.run` of 2 ms or more here).

Two models, each served with batching on and off (FERMION_BATCHING) and driven by wrk over loopback
at 1 and 32 connections, one input per request as an OIP v2 binary tensor (the JSON form of 12,288
floats would measure the JSON parser, not batching). `session.run` at batch 1 and 32 is printed
first: batching can only win what a batched run saves per row.
- a ResNet-18 layout on 3x64x64 images: convolutions are compute-bound on a CPU already at batch 1,
  so a batch of 32 costs little less per row than 32 single runs;
- a two-layer LSTM sequence classifier: each step is a matrix-vector product at batch 1, bound by
  reading the weights, which a batch shares.

    apt-get install wrk   # once
    .venv/bin/python bench/batching.py [--seconds 8]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_key, bench_registry, fermion_argv, free_port, run_ms, serve, stop, wrk

from fermion.compile import export_onnx
from fermion.model_store import Draft, Signature, TensorSpec


class BasicBlock(nn.Module):
    """ResNet's basic block: two 3x3 convolutions with batch norm, and a projection when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(),
            nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
            nn.BatchNorm2d(cout),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and cin == cout
            else nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.body(x) + self.skip(x))


def small_resnet() -> nn.Module:
    """ResNet-18's layout (stem, four stages of two basic blocks, 64 to 512 channels) on 3x64x64 inputs."""
    stem = [nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(3, 2, 1)]
    layers: list[nn.Module] = list(stem)
    cin = 64
    for stage, width in enumerate((64, 128, 256, 512)):
        for block in range(2):
            layers.append(BasicBlock(cin, width, 2 if block == 0 and stage > 0 else 1))
            cin = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10)]
    return nn.Sequential(*layers).eval()


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


class SequenceClassifier(nn.Module):
    """A two-layer LSTM over 64 steps of 16 features (sensor time series), classified from the last step."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = nn.LSTM(16, 256, 2, batch_first=True)
        self.head = nn.Linear(256, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.head(out[:, -1])


MODELS = {  # name: (what it is, module, one request's input shape)
    "resnet": ("ResNet-18 layout on 3x64x64 images", small_resnet, (3, 64, 64)),
    "lstm": ("2-layer LSTM, 64 steps x 16 features", SequenceClassifier, (64, 16)),
}


def measure(name: str, seconds: int) -> dict[str, dict[int, dict[str, float]]]:
    """Serve model `name` with batching on, then off; wrk at 1 and 32 connections."""
    title, make, shape = MODELS[name]
    torch.manual_seed(0)
    module = make().eval()
    x = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    onnx_bytes = export_onnx(module, torch.from_numpy(np.repeat(x, 2, axis=0))).onnx_bytes
    options = ort.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the server runs it
    session = ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])
    one, many = run_ms(session, x, 40), run_ms(session, np.repeat(x, 32, axis=0), 8)
    print(f"{title}: session.run batch 1 {one:.2f} ms, batch 32 {many:.1f} ms ({many / 32:.2f} ms/row)")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        out = module(torch.from_numpy(x)).shape[1]
        sig = Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, *shape])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, out])],
        )
        bench_registry(home).register("default", name, {"model.onnx": onnx_bytes}, Draft(signature=sig))
        script, body, header_length = lua_body(x)
        auth = bench_key(home)
        results = {}
        for batching in ("on", "off"):
            port = free_port()
            env = {
                **os.environ,
                "FERMION_HOME": str(home),
                "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
                "FERMION_BATCHING": str(batching == "on").lower(),
            }
            url = f"http://127.0.0.1:{port}/v2/models/{name}/infer"
            proc = serve(
                fermion_argv(port), env, url, body, {"Inference-Header-Content-Length": str(header_length), **auth}
            )
            try:
                wrk(url, script, 32, 1, raw_script=True, headers=auth)  # warm-up
                results[batching] = {c: wrk(url, script, c, seconds, raw_script=True, headers=auth) for c in (1, 32)}
            finally:
                stop(proc)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    args = parser.parse_args()
    measured = {name: measure(name, args.seconds) for name in args.models}
    print(f"one input per request (OIP v2 binary tensor), wrk {args.seconds}s per point")
    print(f"{'model':7} {'batching':9} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, results in measured.items():
        for batching, by_conns in results.items():
            for c, r in by_conns.items():
                print(f"{name:7} {batching:9} {c:5d} {r['p50']:8.2f} {r['p99']:8.2f} {r['rps']:8.0f}")
    for name, results in measured.items():
        on, off = results["on"][32], results["off"][32]
        ratio, p99 = on["rps"] / off["rps"], on["p99"] / off["p99"]
        print(f"{name}: at 32 connections, batching on vs off: {ratio:.2f}x req/s, p99 {p99:.2f}x")


if __name__ == "__main__":
    main()
