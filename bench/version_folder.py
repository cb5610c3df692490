"""What checking the unpacked version folder costs, for a model with external data (local-directory store).

`RegistryReader.fetch_all` gives ONNX Runtime a folder of a version's files (model.onnx beside its
weights.bin). Before reusing one it checks each file against the manifest: hashed once per process
(a fresh registry object stands for a fresh process), afterwards only stat'ed while the files'
stamps stay put. Printed beside what the same model's ONNX Runtime session takes to create, so
the check is seen next to the load it precedes. Medians of interleaved runs.

    .venv/bin/python bench/version_folder.py [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from fermion.model_store import Draft, LocalDirStore, Registry, Signature, TensorSpec


def timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def external_model(n_in: int, n_out: int) -> dict[str, bytes]:
    """y = x·W with W (n_in x n_out float32) in weights.bin."""
    w = numpy_helper.from_array(np.random.default_rng(0).normal(size=(n_in, n_out)).astype(np.float32), "W")
    weights = w.raw_data
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "weights.bin"), ("offset", "0"), ("length", str(len(weights)))):
        w.external_data.add(key=key, value=value)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["logits"])],
        "big",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    return {"model.onnx": model.SerializeToString(), "weights.bin": weights}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    print(f"{args.runs} interleaved runs, medians (ms):")
    print(f"{'weights':>9}  {'build':>9}  {'check':>9}  {'warm':>9}  {'session':>9}  check/session  MB/s hashed")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        store, cache = LocalDirStore(Path(tmp) / "store"), Path(tmp) / "cache"
        for n_in, n_out in ((1024, 1024), (4096, 4096), (8192, 8192)):
            files = external_model(n_in, n_out)
            sig = Signature(
                inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, n_in])],
                outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, n_out])],
            )
            manifest = Registry(store, cache).register("default", f"m{n_in}", files, Draft(signature=sig))
            build, check, warm, session = [], [], [], []
            for _ in range(args.runs):
                fresh = Registry(store, cache)  # a new process: nothing remembered
                for folder in (cache / "versions").glob("*"):
                    fresh.folders._discard(folder)
                build.append(timed(lambda: fresh.fetch_all(manifest)))  # noqa: B023
                process = Registry(store, cache)
                check.append(timed(lambda: process.fetch_all(manifest)))  # noqa: B023
                warm.append(timed(lambda: process.fetch_all(manifest)))  # noqa: B023
                path = str(process.fetch_all(manifest) / "model.onnx")
                session.append(timed(lambda: ort.InferenceSession(path, providers=["CPUExecutionProvider"])))  # noqa: B023
            b, c, w, s = (statistics.median(x) * 1000 for x in (build, check, warm, session))
            mb = len(files["weights.bin"]) / 1e6
            print(f"{mb:7.1f}MB  {b:9.2f}  {c:9.2f}  {w:9.3f}  {s:9.2f}  {c / s:13.2f}  {mb / (c / 1000):11.0f}")


if __name__ == "__main__":
    main()
