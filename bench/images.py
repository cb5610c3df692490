"""Pictures against raw tensors, served by the inference entry point and driven by wrk over loopback.

One digits CNN trained on 28x28 grayscale pictures (image contract 28x28x1; scale, normalise and
layout in the graph). Per request, one picture, four ways at 1 and 32 connections:

- raw FP32 pixels (1, 28, 28, 1) as OIP v2 JSON, and as the binary tensor extension (the caller
  decoded the picture itself);
- the encoded PNG as an OIP v2 BYTES tensor (binary extension, as tritonclient sends it);
- the encoded PNG as base64 in `:predict` JSON (labels and probabilities back).

The picture paths add the server-side decode (fermion.imaging, Pillow) and the answer; the
figures say what that costs. First, in process: where the resize belongs (Pillow beside ONNX
Runtime's Resize), and the decode / run split of one picture request.

    apt-get install wrk   # once
    .venv/bin/python bench/images.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import shutil
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import compile_bytecode, fermion_argv, free_port, serve, stop, wrk

CONNECTIONS = (1, 32)


def median_us(fn: Callable[[], object], n: int = 300) -> float:
    """Median wall time of `fn` in microseconds, after a warm-up."""
    for _ in range(10):
        fn()
    times = []
    for _ in range(n):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e6


def encoded(picture: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    picture.save(buf, fmt)
    return buf.getvalue()


def digit_pngs() -> tuple[list[bytes], np.ndarray]:
    """scikit-learn's digits as 28x28 grayscale PNG files."""
    from sklearn.datasets import load_digits

    d = load_digits()
    pictures = [
        Image.fromarray((row.reshape(8, 8) * (255 / 16)).round().astype(np.uint8), "L").resize((28, 28))
        for row in d.data
    ]
    return [encoded(p, "PNG") for p in pictures], d.target


def register_picture_model(home: Path) -> tuple[bytes, np.ndarray]:
    """Train the CNN on digit pictures (one epoch: latency, not accuracy) and register it; a PNG and its pixels."""
    import torch

    from fermion.compile import export_onnx
    from fermion.events import ImageContract, Recipe
    from fermion.imaging import decode
    from fermion.model_store import Draft, LocalDirStore, Registry, Signature, TensorSpec
    from fermion.training.data import Dataset
    from fermion.training.loop import train

    pngs, y = digit_pngs()
    contract = ImageContract(height=28, width=28, channels=1)
    x = np.stack([decode(p, contract) for p in pngs[:600]]).astype(np.float32)
    trained = train(Dataset(x, y[:600], [str(i) for i in range(10)], contract), Recipe(architecture="cnn", epochs=1))
    model = export_onnx(trained.module, torch.from_numpy(x[:2])).onnx_bytes
    draft = Draft(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 28, 28, 1])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
        ),
        labels=trained.labels,
        image=trained.image.model_dump() if trained.image else None,
    )
    Registry(LocalDirStore(home / "store"), home / "prep-cache").register(
        "default", "digits", {"model.onnx": model}, draft
    )
    return pngs[700], decode(pngs[700], contract).astype(np.float32)[None]


def placement() -> None:
    """Where the resize goes: Pillow after decoding, or ONNX Runtime's Resize inside the graph."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("Cast", ["x"], ["f"], to=TensorProto.FLOAT),
            helper.make_node("Transpose", ["f"], ["t"], perm=[0, 3, 1, 2]),
            helper.make_node("Resize", ["t", "", "", "sizes"], ["y"], mode="linear", antialias=1),
        ],
        "resize",
        [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, None, None, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [helper.make_tensor("sizes", TensorProto.INT64, [4], [1, 1, 28, 28])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    cases = {
        "28x28 PNG, grey": encoded(Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8), "L"), "PNG"),
        "640x480 PNG, grey": encoded(Image.fromarray(rng.integers(0, 256, (480, 640), dtype=np.uint8), "L"), "PNG"),
        "640x480 JPEG, RGB->grey": encoded(
            Image.fromarray(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), "RGB"), "JPEG"
        ),
    }
    print("resize placement, one picture to 28x28x1 (median us):")
    print(f"  {'picture':26} {'decode':>9} {'+ Pillow resize':>16} {'+ ORT Resize':>13}")
    for name, data in cases.items():

        def pil(data: bytes = data) -> object:
            return np.asarray(Image.open(io.BytesIO(data)).convert("L").resize((28, 28), Image.Resampling.BILINEAR))

        def in_graph(data: bytes = data) -> object:
            pixels = np.asarray(Image.open(io.BytesIO(data)).convert("L"))[None, :, :, None]
            return session.run(None, {"x": pixels})

        def decode_only(data: bytes = data) -> object:
            return np.asarray(Image.open(io.BytesIO(data)).convert("L"))

        fns = (decode_only, pil, in_graph)
        # Interleaved rounds, so that load from elsewhere on the machine falls on all three alike.
        rounds = [[median_us(fn, 40) for fn in fns] for _ in range(7)]
        a, b, c = (statistics.median(r[i] for r in rounds) for i in range(3))
        print(f"  {name:26} {a:9.1f} {b:16.1f} {c:13.1f}")


def split(picture: bytes, home: Path) -> None:
    """One picture request's work in process: decode (fermion.imaging) and session.run, apart."""
    from fermion.events import ImageContract
    from fermion.imaging import decode

    contract = ImageContract(height=28, width=28, channels=1)
    model = next((home / "store").rglob("model.onnx"))
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    pixels = decode(picture, contract).astype(np.float32)[None]
    print("one 28x28 PNG, in process (median us):")
    print(f"  decode (fermion.imaging)  {median_us(lambda: decode(picture, contract)):8.1f}")
    print(f"  session.run               {median_us(lambda: session.run(None, {'input': pixels})):8.1f}")


def in_process(ways: dict[str, tuple[str, bytes, dict[str, str]]], home: Path, n: int = 400) -> None:
    """Each way's time per request through the app itself (ASGI, no sockets): the server's own work."""
    import asyncio

    import httpx

    from fermion.functions.inference.app import create_app
    from fermion.functions.inference.runtime import ModelRuntime
    from fermion.functions.inference.settings import InferenceSettings
    from fermion.model_store import LocalDirStore, Registry

    settings = InferenceSettings(home=home, providers=["CPUExecutionProvider"], batching=False)
    runtime = ModelRuntime(Registry(LocalDirStore(home / "store"), home / "bench-cache"), settings)
    app = create_app(lambda: runtime, lambda: settings, batching=False)

    async def per_request() -> dict[str, list[float]]:
        times: dict[str, list[float]] = {name: [] for name in ways}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://bench") as client:
            for _ in range(5):  # interleaved rounds
                for name, (route, body, headers) in ways.items():
                    for _ in range(20):
                        assert (await client.post(route, content=body, headers=headers)).status_code == 200
                    started = time.perf_counter()
                    for _ in range(n // 5):
                        await client.post(route, content=body, headers=headers)
                    times[name].append((time.perf_counter() - started) / (n // 5) * 1e6)
        return times

    times = asyncio.run(per_request())
    raw = statistics.median(times["raw FP32, binary"])
    print("one request through the app in process (ASGI, no sockets; median us, and over raw FP32 binary):")
    for name, values in times.items():
        us = statistics.median(values)
        print(f"  {name:22} {us:8.1f}  {us - raw:+7.1f}")


def lua(path: Path, url_path: str, headers: dict[str, str]) -> str:
    """A wrk script posting the bytes of `path` (binary bodies cannot go through a Lua string literal)."""
    lines = ['wrk.method = "POST"', f'local f = io.open("{path}", "rb")', "wrk.body = f:read('*a')", "f:close()"]
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    lines.append(f'wrk.path = "{url_path}"')
    return "\n".join(lines) + "\n"


def bodies(picture: bytes, pixels: np.ndarray, home: Path) -> dict[str, tuple[str, bytes, dict[str, str]]]:
    """Each way's (route, body, headers)."""
    infer = "/v2/models/digits/infer"
    raw = {"name": "input", "shape": [1, 28, 28, 1], "datatype": "FP32"}
    raw_json = json.dumps({"inputs": [{**raw, "data": pixels.ravel().tolist()}]}).encode()
    blob = pixels.astype("<f4").tobytes()
    raw_header = json.dumps({"inputs": [{**raw, "parameters": {"binary_data_size": len(blob)}}]}).encode()
    element = struct.pack("<I", len(picture)) + picture
    pic = {"name": "input", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": len(element)}}
    pic_header = json.dumps({"inputs": [pic]}).encode()
    b64 = json.dumps({"instances": [{"b64": base64.b64encode(picture).decode()}]}).encode()
    octet = "application/octet-stream"
    return {
        "raw FP32, JSON": (infer, raw_json, {"Content-Type": "application/json"}),
        "raw FP32, binary": (
            infer,
            raw_header + blob,
            {"Content-Type": octet, "Inference-Header-Content-Length": str(len(raw_header))},
        ),
        "PNG as BYTES, binary": (
            infer,
            pic_header + element,
            {"Content-Type": octet, "Inference-Header-Content-Length": str(len(pic_header))},
        ),
        "PNG base64, :predict": ("/v1/models/digits:predict", b64, {"Content-Type": "application/json"}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    placement()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        picture, pixels = register_picture_model(home)
        split(picture, home)
        ways = bodies(picture, pixels, home)
        in_process(ways, home)
        compile_bytecode()
        env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        route, body, headers = ways["raw FP32, JSON"]
        proc = serve(fermion_argv(port), env, base + route, body, headers)
        scripts = {}
        for i, (name, (route, body, headers)) in enumerate(ways.items()):
            (home / f"body-{i}.bin").write_bytes(body)
            scripts[name] = (base + route, lua(home / f"body-{i}.bin", route, headers))
        runs: dict[str, dict[int, list[dict[str, float]]]] = {name: {c: [] for c in CONNECTIONS} for name in ways}
        try:
            for url, script in scripts.values():
                wrk(url, script, 8, 1, raw_script=True)  # warm-up
            for _ in range(args.rounds):  # interleaved: load from elsewhere falls on every way alike
                for c in CONNECTIONS:
                    for name, (url, script) in scripts.items():
                        runs[name][c].append(wrk(url, script, c, args.seconds, raw_script=True))
        finally:
            stop(proc)
    results = {
        name: {c: {k: statistics.median(r[k] for r in rs) for k in ("p50", "p99", "rps")} for c, rs in by.items()}
        for name, by in runs.items()
    }
    print(f"served over loopback, one picture per request, median of {args.rounds} wrk runs of {args.seconds}s (CPU)")
    print(f"  {'request':22} {'conns':>5} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for name, by_conns in results.items():
        for c, r in by_conns.items():
            print(f"  {name:22} {c:5d} {r['p50']:8.3f} {r['p99']:8.3f} {r['rps']:8.0f}")
    base_way = results["raw FP32, binary"]
    for name in ("PNG as BYTES, binary", "PNG base64, :predict"):
        ratios = ", ".join(
            f"{c} conns: p50 {results[name][c]['p50'] / base_way[c]['p50']:.2f}x "
            f"(+{(results[name][c]['p50'] - base_way[c]['p50']) * 1000:.0f} us), "
            f"req/s {results[name][c]['rps'] / base_way[c]['rps']:.2f}x"
            for c in CONNECTIONS
        )
        print(f"{name} vs raw FP32 binary: {ratios}")


if __name__ == "__main__":
    main()
