"""Issue 26's bar for large tables: a 2,000,000-row x 20-column CSV trains with the trainer's peak RSS <= 3x
the float32 feature matrix.

Generates the CSV in a temporary directory (16 numbers with blanks, 2 integers, a category, a yes/no
column and an integer class label), then, in a fresh process, loads it and trains one epoch through the
trainer's own path (training.data.load_dataset -> training.loop.train), and prints the peak RSS beside
the matrix's size, and beside it the fixed cost: the peak of the same job on a 2,000-row slice of the
file, run first in the same process (Python, torch with the torch._dynamo that torch.optim imports at
its first step, and the code pages of Arrow's compute library: ~440 MiB whatever the table). Both
readings of the bar are shown: the whole peak, and the part above the fixed cost.
With --job, the trainer's whole job is measured the same way in a third process: load, train, compile
and check the ONNX variants, register (functions/trainer/job.py's run_job on a local-directory store).
Usage: python bench/tables_memory.py [ROWS] [--job]
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROWS = 2_000_000


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """The table, written in chunks (the generator's own memory stays small)."""
    rng = np.random.default_rng(seed)
    header = [f"n{i}" for i in range(16)] + ["k1", "k2", "region", "member", "label"]
    with open(path, "w") as f:
        f.write(",".join(header) + "\n")
        for start in range(0, rows, 200_000):
            n = min(200_000, rows - start)
            numbers = rng.normal(size=(n, 16)).round(4).astype(str)
            numbers[rng.random((n, 16)) < 0.02] = ""  # blanks
            ints = rng.integers(0, 1000, size=(n, 2)).astype(str)
            region = rng.choice(np.array(["north", "south", "east", "west", "centre"]), n)
            member = rng.choice(np.array(["yes", "no"]), n)
            label = (numbers[:, 0] != "").astype(int) + rng.integers(0, 2, n)
            cells = np.column_stack([numbers, ints, region, member, label.astype(str)])
            f.write("\n".join(",".join(r) for r in cells) + "\n")


def peak_rss() -> int:
    """This process's RSS high-water mark (VmHWM: per address space, unlike ru_maxrss, which survives exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def child(path: str, small: str) -> None:
    """Load and train one epoch as the trainer does, first on a 2,000-row slice (the fixed cost); print the figures."""
    import torch._dynamo  # noqa: F401  torch.optim imports it at its first step: counted with the imports

    from fermion.events import Recipe
    from fermion.training.data import load_dataset
    from fermion.training.loop import train
    from fermion.training.memory import fix_mmap_threshold

    fix_mmap_threshold()  # as the trainer's and a rank's entry points do
    imports = peak_rss()
    recipe = Recipe(epochs=1, batch_size=4096, label_column="label")
    slice_ = load_dataset(Path(small), "csv", recipe.label_column, seed=recipe.seed, test_fraction=recipe.test_fraction)
    train(slice_, recipe)
    del slice_
    fixed = peak_rss()  # Arrow's compute library and torch's kernels are paged in once, whatever the table
    started = time.perf_counter()
    ds = load_dataset(Path(path), "csv", recipe.label_column, seed=recipe.seed, test_fraction=recipe.test_fraction)
    loaded = time.perf_counter() - started
    after_load = peak_rss()
    trained = train(ds, recipe)
    peak = peak_rss()
    matrix = ds.x.nbytes
    mb = 1 << 20
    print(f"rows {len(ds.x):,}, network inputs {ds.x.shape[1]} (from {len(ds.schema.columns)} columns)")
    print(f"float32 feature matrix: {matrix / mb:.0f} MiB")
    print(
        f"RSS after imports: {imports / mb:.0f} MiB; peak of the same job on a 2,000-row slice (fixed cost): "
        f"{fixed / mb:.0f} MiB; peak after loading: {after_load / mb:.0f} MiB; peak: {peak / mb:.0f} MiB"
    )
    print(f"load {loaded:.1f} s, one epoch + evaluation {trained.duration_s:.1f} s, metrics {trained.metrics}")
    whole, above = peak / matrix, (peak - fixed) / matrix
    print(f"peak RSS / matrix: {whole:.2f}x ({'pass' if whole <= 3 else 'FAIL'} at <= 3x)")
    print(f"peak RSS above the fixed cost / matrix: {above:.2f}x ({'pass' if above <= 3 else 'FAIL'} at <= 3x)")


def job_child(home: str, big: str, small: str) -> None:
    """The trainer's whole job (load, train, compile and check the variants, register), on the slice first."""
    import torch._dynamo  # noqa: F401  (as in child)

    from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested
    from fermion.functions.trainer.job import run_job
    from fermion.model_store import StoreSettings, open_registry
    from fermion.model_store.features import FeatureSchema
    from fermion.training.memory import fix_mmap_threshold

    fix_mmap_threshold()
    registry = open_registry(StoreSettings(home=Path(home)))
    recipe = Recipe(epochs=1, batch_size=4096, label_column="label")

    def run(ref: str, model: str) -> int:
        """The job; the network's input width from the manifest's feature schema."""
        data = TrainingRequest(model_name=model, dataset=DatasetRef.model_validate_json(ref), recipe=recipe)
        manifest = run_job(TrainingRequested(data=data), registry)
        schema = FeatureSchema.model_validate(manifest.features)
        return sum(len(c.categories) if c.kind == "category" else 1 for c in schema.columns)

    imports = peak_rss()
    run(small, "slice")
    fixed = peak_rss()
    started = time.perf_counter()
    inputs = run(big, "big")
    took, peak, mb = time.perf_counter() - started, peak_rss(), 1 << 20
    print(f"the trainer's whole job (load, train, compile, check, register): {took:.0f} s")
    print(
        f"RSS after imports: {imports / mb:.0f} MiB; the job on the slice (fixed cost): {fixed / mb:.0f} MiB; "
        f"peak: {peak / mb:.0f} MiB"
    )
    matrix = int(os.environ["FERMION_BENCH_ROWS"]) * inputs * 4  # every generated row is labelled
    whole, above = peak / matrix, (peak - fixed) / matrix
    print(f"job peak RSS / matrix: {whole:.2f}x ({'pass' if whole <= 3 else 'FAIL'} at <= 3x)")
    print(f"job peak RSS above the fixed cost / matrix: {above:.2f}x ({'pass' if above <= 3 else 'FAIL'} at <= 3x)")


def main() -> None:
    """Generate, then measure in a fresh process (ru_maxrss is a process's high-water mark)."""
    numbers = [a for a in sys.argv[1:] if a.isdigit()]
    rows = int(numbers[0]) if numbers else ROWS
    with tempfile.TemporaryDirectory(prefix="fermion-tables-") as tmp:
        path = Path(tmp) / "big.csv"
        started = time.perf_counter()
        write_csv(path, rows)
        print(
            f"wrote {rows:,} rows x 21 columns ({path.stat().st_size / (1 << 20):.0f} MiB) "
            f"in {time.perf_counter() - started:.0f} s"
        )
        small = Path(tmp) / "slice.csv"
        with open(path) as whole, open(small, "w") as out:
            out.writelines(line for _, line in zip(range(2001), whole, strict=False))
        subprocess.run([sys.executable, __file__, "--child", str(path), str(small)], check=True)
        if "--job" in sys.argv:
            from fermion.events import DatasetRef
            from fermion.model_store import DatasetStore, LocalDirStore

            home = Path(tmp) / "home"
            datasets = DatasetStore(LocalDirStore(home / "store"))
            refs = []
            for name, file in (("big", path), ("slice", small)):
                stored = datasets.put("default", name, file.read_bytes(), "csv")
                ref = DatasetRef(name=name, sha256=stored.sha256, uri=stored.uri, format="csv", size=stored.size)
                refs.append(ref.model_dump_json())
            path.unlink()  # the store holds its copy
            env = {**os.environ, "FERMION_BENCH_ROWS": str(rows)}
            subprocess.run([sys.executable, __file__, "--job-child", str(home), *refs], check=True, env=env)


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    elif len(sys.argv) > 4 and sys.argv[1] == "--job-child":
        job_child(sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        main()
