"""The drift monitor's false-alarm rate and detection power, per window of sampled rows.

A reference profile of 5,000 rows of 8 standard-normal features; windows of `--rows` rows drawn
from the same distribution (false alarms: any feature flagged), then with two features shifted by
0.25, 0.5 and 1 standard deviation (detected: exactly the shifted features flagged), and the cost
of judging one window.

    .venv/bin/python bench/drift.py [--windows 1000] [--rows 500]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from fermion.functions.monitor.drift import judge
from fermion.model_store.profiles import build_profile

FEATURES = 8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=500)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(5000, FEATURES))
    profile = build_profile(x, (x[:, 0] > 0).astype(int), 2)

    started, alarms, feature_flags = time.perf_counter(), 0, 0
    for _ in range(args.windows):
        w = rng.normal(size=(args.rows, FEATURES))
        verdict = judge(profile, w, (w[:, 0] > 0).astype(int))
        alarms += verdict.alarm
        feature_flags += len(verdict.drifted)
    per_window_ms = (time.perf_counter() - started) / args.windows * 1000
    print(f"{args.windows} in-distribution windows of {args.rows} rows, {FEATURES} features")
    print(f"false-alarm rate: {alarms / args.windows:.4f} per window ({feature_flags} feature flags)")
    print(f"judging one window: {per_window_ms:.2f} ms")
    for shift in (0.25, 0.5, 1.0):
        exact = 0
        for _ in range(200):
            w = rng.normal(size=(args.rows, FEATURES))
            w[:, [2, 5]] += shift
            exact += judge(profile, w, (w[:, 0] > 0).astype(int)).drifted == ["f2", "f5"]
        print(f"shift {shift:4.2f} sd on f2, f5: both (and only they) named in {exact / 200:.3f} of windows")


if __name__ == "__main__":
    main()
