"""Cold start of a fresh inference process, beside the bare ONNX Runtime floor, in one run.

Trains the digits CNN once (in this process, no NATS), registers it in a temporary local
registry, then N times: spawns `uvicorn fermion.functions.inference.app:app` on a loopback port
and times spawn → first correct answer to an Open Inference Protocol v2 request (model fetched
from the registry and sha256-verified on that first request). The floor is a bare script that
imports onnxruntime, creates the session from the same file and runs once.

    .venv/bin/python bench/cold_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from sklearn.datasets import load_digits

from fermion.compile import check_parity, export_onnx
from fermion.events import Recipe
from fermion.functions.trainer.train import Dataset, train
from fermion.model_store import Draft, LocalDirStore, Registry, Signature, TensorSpec


def register_digits(home: Path) -> tuple[Path, np.ndarray, int]:
    import torch

    d = load_digits()
    ds = Dataset(d.data.astype(np.float32), d.target.astype(np.int64), [str(i) for i in range(10)])
    trained = train(ds, Recipe(architecture="cnn", epochs=8, learning_rate=2e-3))
    exported = export_onnx(trained.module, torch.from_numpy(trained.x_test[:2]))
    check_parity(trained.module, exported.onnx_bytes, trained.x_test)
    registry = Registry(LocalDirStore(home / "store"), home / "prep-cache")
    sig = Signature(
        inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, 64])],
        outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, 10])],
    )
    manifest = registry.register("default", "digits", {"model.onnx": exported.onnx_bytes}, Draft(signature=sig))
    sample = trained.x_test[:1]
    with torch.no_grad():
        expected = int(trained.module(torch.from_numpy(sample)).argmax())
    return registry.fetch(manifest), sample, expected


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


HAND_WRITTEN = """
import numpy as np, onnxruntime as ort
from fastapi import FastAPI, Request
session = ort.InferenceSession(MODEL, providers=["CPUExecutionProvider"])
app = FastAPI()

@app.post("/v2/models/digits/infer")
async def infer(request: Request):
    t = (await request.json())["inputs"][0]
    (out,) = session.run(None, {"input": np.asarray(t["data"], dtype=np.float32).reshape(t["shape"])})
    return {"model_name": "digits", "outputs": [{"name": "logits", "shape": list(out.shape), "datatype": "FP32",
            "data": out.ravel().tolist()}]}
"""


def fermion_cold_start(
    home: Path,
    sample: np.ndarray,
    expected: int,
    *,
    preload: bool = False,
    app: str = "fermion.functions.inference.app:app",
) -> float:
    """Spawn a server, time it to its first correct answer (the model fetched and verified on that request)."""
    port = free_port()
    cache = tempfile.mkdtemp(prefix="cache-", dir=home)  # an empty cache: a real fetch + verify
    env = {
        **os.environ,
        "FERMION_HOME": str(home),
        "FERMION_CACHE_DIR": cache,
        "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
        "PYTHONPATH": str(home),
    }
    if preload:
        env["FERMION_PRELOAD"] = "digits"
    body = {"inputs": [{"name": "input", "shape": [1, 64], "datatype": "FP32", "data": sample.ravel().tolist()}]}
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", app],
        env=env,
    )
    try:
        deadline = started + 60
        while time.perf_counter() < deadline:
            try:
                r = httpx.post(f"http://127.0.0.1:{port}/v2/models/digits/infer", json=body, timeout=10)
                if r.status_code == 200 and int(np.argmax(r.json()["outputs"][0]["data"])) == expected:
                    return time.perf_counter() - started
            except httpx.TransportError:
                time.sleep(0.005)
        raise RuntimeError("no correct answer within 60 s")
    finally:
        proc.terminate()
        proc.wait(10)


FLOOR = """
import sys, numpy as np, onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
s.run(None, {"input": np.zeros((1, 64), np.float32)})
"""


def floor(model: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR, str(model)], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        model, sample, expected = register_digits(home)
        (home / "hand.py").write_text(HAND_WRITTEN.replace("MODEL", repr(str(model))))
        runs: dict[str, list[float]] = {
            "bare ORT floor (import + session + run)": [],
            "hand-written FastAPI, model from local disk": [],
            "fermion, registry fetch + sha256 on 1st request": [],
            "fermion, FERMION_PRELOAD (load beside imports)": [],
        }
        for _ in range(args.runs):  # interleaved, so drift on a noisy machine hits all alike
            a, b, c, d = runs.values()
            a.append(floor(model))
            b.append(fermion_cold_start(home, sample, expected, app="hand:app"))
            c.append(fermion_cold_start(home, sample, expected))
            d.append(fermion_cold_start(home, sample, expected, preload=True))
    print(f"digits CNN, spawn -> first correct answer, {args.runs} interleaved runs, medians (min..max):")
    hand = statistics.median(runs["hand-written FastAPI, model from local disk"])
    for title, xs in runs.items():
        m = statistics.median(xs)
        print(
            f"  {title:50s} {m * 1000:6.0f} ms ({min(xs) * 1000:.0f}..{max(xs) * 1000:.0f})  "
            f"{m / hand:.2f}x hand-written"
        )


if __name__ == "__main__":
    main()
