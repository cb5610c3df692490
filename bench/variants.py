"""Compile variants side by side: size, held-out accuracy, parity and CPU latency per variant.

Trains the digits CNN and a tabular MLP (scikit-learn's breast-cancer data), compiles fp32
(ORT basic optimisation), int8 (static QDQ with calibration for the CNN, dynamic for the MLP)
and fp16, and prints the compile report's figures.

    .venv/bin/python bench/variants.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits

from fermion.compile import compile_variants
from fermion.events import Recipe
from fermion.training.data import Dataset
from fermion.training.loop import train


def main() -> None:
    digits, cancer = load_digits(), load_breast_cancer()
    cases = [
        (
            "digits cnn",
            Dataset(digits.data.astype(np.float32), digits.target, [str(i) for i in range(10)]),
            Recipe(architecture="cnn", epochs=15, learning_rate=2e-3),
        ),
        (
            "tabular mlp",
            Dataset(cancer.data.astype(np.float32), cancer.target, ["malignant", "benign"]),
            Recipe(architecture="mlp", epochs=40, learning_rate=3e-3),
        ),
    ]
    for title, ds, recipe in cases:
        trained = train(ds, recipe)
        compiled = compile_variants(trained.module, trained.x_test, trained.y_test, calibration=trained.x_calibration)
        report = compiled.report
        print(
            f"\n{title}: torch held-out accuracy {report['torch_accuracy']:.4f} ({len(trained.x_test)} rows), "
            f"exporter {report['exporter']}, opset {report['opset']}, budget {report['accuracy_budget'] * 100:.0f} pt"
        )
        print(
            f"  {'variant':8} {'bytes':>9} {'x smaller':>9} {'accuracy':>9} {'delta pt':>9} {'max|diff|':>10} "
            f"{'b1 ms':>8} {'b32 ms':>8}"
        )
        base = compiled.variants["fp32"]["size"]
        for name, v in compiled.variants.items():
            print(
                f"  {name:8} {v['size']:9d} {base / v['size']:9.2f} {v['accuracy']:9.4f} "
                f"{v['accuracy_delta'] * 100:9.2f} {v['max_abs_diff']:10.2e} "
                f"{v['cpu_latency_ms']['batch1']:8.3f} {v['cpu_latency_ms']['batch32']:8.3f}"
            )
        for name, why in report["refused"].items():
            print(f"  {name:8} refused: {why}")


if __name__ == "__main__":
    main()
