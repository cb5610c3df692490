"""Data-parallel throughput, 1 worker against 2, and what checkpoints cost.

Trains the `cnn` architecture on synthetic square images big enough for compute to outweigh the
gradient all-reduce, through the same code a trainer runs: `train()` in-process for 1 worker
(torch's default threads), and torch's elastic launcher with 2 ranks of one thread each
(training/distributed.py). Prints the median training samples/s over the epochs after the
first (summed over ranks) and the ratio; then, for the 1-worker run with a checkpoint every epoch,
the checkpoint's size and write time per epoch, and the time to resume (read, verify, load).

    .venv/bin/python bench/distributed.py [--rows 6000] [--side 16] [--epochs 4] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested
from fermion.model_store import DatasetStore, LocalDirStore
from fermion.training.architectures import build
from fermion.training.checkpoints import Checkpointer, CheckpointPolicy
from fermion.training.data import Dataset
from fermion.training.distributed import train_distributed
from fermion.training.loop import train


def images(rows: int, side: int, classes: int = 10, seed: int = 0) -> Dataset:
    """Noisy class templates as flat pixels: learnable, and as large as asked."""
    rng = np.random.default_rng(seed)
    templates = rng.normal(size=(classes, side * side)).astype(np.float32)
    y = rng.integers(0, classes, rows)
    x = templates[y] + rng.normal(scale=2.0, size=(rows, side * side)).astype(np.float32)
    return Dataset(x.astype(np.float32), y.astype(np.int64), [str(c) for c in range(classes)])


class Rates:
    """Samples/s per epoch, summed over ranks, from the progress reports."""

    def __init__(self) -> None:
        self.per_epoch: list[float] = []
        self.per_rank: list[list[float]] = []

    def __call__(self, epoch: int, epochs: int, loss: float, metrics: dict[str, float], **extra: Any) -> None:
        if extra.get("resumed_at") is None and extra.get("samples_per_s"):
            self.per_epoch.append(sum(extra["samples_per_s"]))
            self.per_rank.append(list(extra["samples_per_s"]))

    def median(self) -> float:
        steady = self.per_epoch[1:] or self.per_epoch  # the first epoch pays for warm-up
        return statistics.median(steady)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=6000)
    parser.add_argument("--side", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()

    ds = images(args.rows, args.side)
    recipe = Recipe(architecture="cnn", epochs=args.epochs, batch_size=args.batch_size, learning_rate=1e-3)
    params = sum(p.numel() for p in build("cnn", ds.x[:64], len(ds.labels)).parameters())
    print(f"model: cnn on {args.side}x{args.side} images, {params / 1e6:.2f}M parameters; {args.rows} rows")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads in-process")

    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        store = LocalDirStore(Path(tmp) / "store")
        every_epoch = CheckpointPolicy(every_epochs=1, every_s=3600)

        threads = torch.get_num_threads()
        one: dict[int, Rates] = {}
        for n in sorted({1, threads}):  # one thread per process, as each rank has; then torch's default
            torch.set_num_threads(n)
            one[n] = Rates()
            checkpointer = Checkpointer.open(store, "default", f"bench-{n}", every_epoch)
            train(ds, recipe, one[n], checkpointer)
        torch.set_num_threads(threads)

        buf = io.BytesIO()
        np.savez(buf, x=ds.x, y=ds.y)
        stored = DatasetStore(store).put("default", "images", buf.getvalue(), "npz")
        ref = DatasetRef(name="images", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
        event = TrainingRequested(
            data=TrainingRequest(
                model_name="bench", dataset=ref, recipe=recipe.model_copy(update={"workers": args.workers})
            )
        )
        many = Rates()
        workdir = Path(tmp) / "job"
        workdir.mkdir()
        started = time.perf_counter()
        train_distributed(event, ds, store, workdir, policy=every_epoch, max_restarts=0, on_epoch=many)
        many_wall = time.perf_counter() - started

        module = build("cnn", ds.x[:64], len(ds.labels))
        optimiser = torch.optim.AdamW(module.parameters(), lr=1e-3)
        resumes = []
        for _ in range(5):
            restored = Checkpointer.open(store, "default", "bench-1", every_epoch).restore(module, optimiser)
            assert restored is not None and restored.epoch == args.epochs
            resumes.append(restored.seconds)

    print(f"load average while measuring: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for n, rates in one.items():
        print(f"1 worker, {n} thread(s): {rates.median():8.0f} samples/s (median of epochs 2..{args.epochs})")
    rn, best = many.median(), max(r.median() for r in one.values())
    print(
        f"{args.workers} workers x 1 thread: {rn:8.0f} samples/s (per rank {many.per_rank[-1]}), wall {many_wall:.1f}s"
    )
    print(f"ratio {args.workers} workers / best 1 worker: {rn / best:.2f}x")
    print(f"ratio {args.workers} workers / 1 worker of 1 thread: {rn / one[1].median():.2f}x")
    sizes = [s.size for s in checkpointer.saved]
    writes = [s.seconds * 1e3 for s in checkpointer.saved]
    print(
        f"\ncheckpoint per epoch: {statistics.median(sizes) / 1e6:.2f} MB, write (create-only + pointer CAS) "
        f"median {statistics.median(writes):.1f} ms (max {max(writes):.1f} ms) on a local-directory store"
    )
    print(f"resume (read, verify sha256, load model + optimiser): median {statistics.median(resumes) * 1e3:.1f} ms")


if __name__ == "__main__":
    main()
