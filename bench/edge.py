"""Edge bundles side by side: archive size, model size, held-out accuracy and CPU latency per option set.

Trains the digits CNN into a temporary registry (as a trainer would), exports it as edge bundles
with several option sets through the same code as `fermion models export --edge`, and times the
runner's own check (pure-Python Ed25519 + sha256 of every member) and a whole
`python -m fermion_edge BUNDLE predict rows.csv` run.

    .venv/bin/python bench/edge.py
"""

from __future__ import annotations

import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.datasets import load_digits

from fermion.compile.edge import EdgeOptions
from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested
from fermion.functions.ingest.edge_build import export_edge
from fermion.functions.trainer.job import run_job
from fermion.model_store import DatasetStore, StoreSettings, open_registry
from fermion.model_store.settings import SigningSettings

RUNNER = Path(__file__).resolve().parents[1] / "compile" / "edge_runner"
CASES = {
    "fp32, ORT format": EdgeOptions(format="ort"),
    "int8": EdgeOptions(quantize="int8", format="ort"),
    "prune 0.5 + int8, ONNX": EdgeOptions(prune=0.5, quantize="int8", format="onnx"),
    "prune 0.5 + int8, ORT": EdgeOptions(prune=0.5, quantize="int8", format="ort"),
}


def _median_s(fn: object, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    home = Path(tempfile.mkdtemp(prefix="fermion-bench-edge-"))
    store, signing = StoreSettings(home=home), SigningSettings(home=home)
    registry = open_registry(store)
    d = load_digits()
    buf = io.BytesIO()
    np.savez(buf, x=d.data.astype(np.float32), y=d.target)
    stored = DatasetStore(registry.store).put("default", "digits", buf.getvalue(), "npz")
    ref = DatasetRef(name="digits", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    recipe = Recipe(architecture="cnn", epochs=15, learning_rate=2e-3)
    manifest = run_job(
        TrainingRequested(data=TrainingRequest(model_name="digits", dataset=ref, recipe=recipe)), registry
    )
    fp32 = manifest.files["model.onnx"].size
    print(
        f"digits cnn version {manifest.version}: fp32 model.onnx {fp32} bytes, "
        f"held-out accuracy {manifest.metrics['accuracy']:.4f}"
    )
    print(
        f"\n{'bundle':<24}{'archive B':>10}{'x fp32':>8}{'model B':>9}{'accuracy':>10}{'delta pt':>9}"
        f"{'b1 ms':>8}{'b32 ms':>8}{'fp32 b1':>9}{'fp32 b32':>9}"
    )
    rows = home / "rows.csv"
    rows.write_text("\n".join(",".join(map(str, r)) for r in d.data[:500]) + "\n")
    last = home / "last.tar"
    for title, options in CASES.items():
        bundle = export_edge("digits", options, store=store, signing=signing)
        m = bundle.manifest
        acc, lat = m["accuracy"], m["cpu_latency_ms"]
        print(
            f"{title:<24}{len(bundle.archive):>10}{fp32 / len(bundle.archive):>8.2f}{m['sizes']['model_bytes']:>9}"
            f"{acc['bundle']:>10.4f}{acc['delta'] * 100:>9.2f}{lat['bundle']['batch1']:>8.3f}"
            f"{lat['bundle']['batch32']:>8.3f}{lat['served_fp32']['batch1']:>9.3f}{lat['served_fp32']['batch32']:>9.3f}"
        )
        last.write_bytes(bundle.archive)
    sys.path.insert(0, str(RUNNER))
    from fermion_edge import open_bundle

    verify_s = _median_s(lambda: open_bundle(last), 20)
    folder = home / "extracted"
    folder.mkdir()
    with tarfile.open(last, "r:") as tar:
        tar.extractall(folder, filter="data")
    cmd = [sys.executable, "-m", "fermion_edge", str(last), "predict", str(rows)]
    run_s = _median_s(lambda: subprocess.run(cmd, cwd=folder, check=True, capture_output=True), 5)
    print(
        f"\nrunner: verify (gunzip, Ed25519 in pure Python, sha256 of every member) median {verify_s * 1000:.1f} ms; "
        f"`python -m fermion_edge` verify + load + predict 500 rows, whole process, median {run_s * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main()
