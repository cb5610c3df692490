"""What fixing glibc's mmap threshold (training/memory.py) costs in training speed, and saves in peak RSS.

Interleaved rounds on one generated table (bench/tables_memory.py's columns): in each round a fresh
process trains with glibc's default (dynamic) threshold, another with the trainer's fixed one (8 MiB);
each loads the table, trains EPOCHS epochs and prints its training time and peak RSS. Medians over the
rounds, and the ratio fixed / default.
Usage: python bench/allocator.py [ROWS] [ROUNDS]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from tables_memory import peak_rss, write_csv

EPOCHS = 2
BATCHES = (64, 4096)
"""The recipe's default batch, and the large one bench/tables_memory.py trains with."""


def child(path: str, fixed: bool, batch: int) -> None:
    """Load and train; print {"train_s", "peak_mib"} as JSON."""
    from fermion.events import Recipe
    from fermion.training.data import load_dataset
    from fermion.training.loop import train
    from fermion.training.memory import fix_mmap_threshold

    if fixed:
        fix_mmap_threshold()
    recipe = Recipe(epochs=EPOCHS, batch_size=batch, label_column="label")
    ds = load_dataset(Path(path), "csv", recipe.label_column, seed=recipe.seed, test_fraction=recipe.test_fraction)
    trained = train(ds, recipe)
    print(json.dumps({"train_s": trained.duration_s, "peak_mib": peak_rss() / (1 << 20)}))


def main() -> None:
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    runs = [(b, name) for b in BATCHES for name in ("default", "fixed")]
    results: dict[tuple[int, str], list[dict[str, float]]] = {run: [] for run in runs}
    with tempfile.TemporaryDirectory(prefix="fermion-alloc-") as tmp:
        path = Path(tmp) / "table.csv"
        write_csv(path, rows)
        for r in range(rounds):
            for batch, name in runs:
                argv = [sys.executable, __file__, "--child", str(path), name, str(batch)]
                out = subprocess.run(argv, check=True, capture_output=True, text=True)
                results[batch, name].append(json.loads(out.stdout.strip().splitlines()[-1]))
                print(f"round {r + 1}/{rounds} batch {batch} {name}: {results[batch, name][-1]}", file=sys.stderr)
    print(f"{rows:,} rows, {EPOCHS} epochs, {rounds} interleaved rounds (medians, min..max)")
    print("fixed: training/memory.py's threshold; default: glibc's own, which moves")
    med = {}
    for (batch, name), got in results.items():
        t, m = [x["train_s"] for x in got], [x["peak_mib"] for x in got]
        med[batch, name] = (statistics.median(t), statistics.median(m))
        print(
            f"batch {batch:5d} {name:8} train {med[batch, name][0]:.2f} s ({min(t):.2f}..{max(t):.2f}); "
            f"peak {med[batch, name][1]:.0f} MiB ({min(m):.0f}..{max(m):.0f})"
        )
    for batch in BATCHES:
        (t0, m0), (t1, m1) = med[batch, "default"], med[batch, "fixed"]
        print(f"batch {batch}: fixed / default training time {t1 / t0:.2f}x, peak RSS {m1 / m0:.2f}x")


if __name__ == "__main__":
    if len(sys.argv) > 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3] == "fixed", int(sys.argv[4]))
    else:
        main()
