"""Held-out metrics: a classifier's confusion matrix, accuracy, macro-F1 and per-class scores; a regression's
mse, mae and r2."""

from __future__ import annotations

from typing import Any

import numpy as np


def confusion(logits: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): sums across ranks into the whole held-out split's."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, logits.argmax(axis=1)), 1)
    return cm


def _counts(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    tp = np.diag(cm).astype(np.float64)
    return tp, cm.sum(axis=0) - tp, cm.sum(axis=1) - tp


def scores(cm: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix."""
    tp, fp, fn = _counts(cm)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=tp > 0)
    return {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "macro_f1": float(f1.mean())}


def evaluation(cm: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """The confusion matrix (rows: true class, columns: predicted) and each class's precision, recall, F1.

    A class never predicted has precision 0, one absent from the held-out split recall 0 (support says which).
    """
    tp, fp, fn = _counts(cm)
    precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=tp + fp > 0)
    recall = np.divide(tp, tp + fn, out=np.zeros_like(tp), where=tp + fn > 0)
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=tp > 0)
    per_class = [
        {
            "label": label,
            "precision": round(float(precision[i]), 6),
            "recall": round(float(recall[i]), 6),
            "f1": round(float(f1[i]), 6),
            "support": int(tp[i] + fn[i]),
        }
        for i, label in enumerate(labels)
    ]
    return {"labels": list(labels), "confusion": [[int(c) for c in row] for row in cm], "per_class": per_class}


def evaluate(logits: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of arg-max predictions."""
    return scores(confusion(logits, y, n_classes))


def error_sums(predicted: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Sums a regression's metrics need, in the label's units: they add up across ranks.

    [rows, squared errors, absolute errors, y, y squared].
    """
    err = np.asarray(predicted, dtype=np.float64) - np.asarray(y, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return np.array([len(y), float(np.sum(err**2)), float(np.sum(np.abs(err))), float(y.sum()), float(np.sum(y**2))])


def regression_scores(sums: np.ndarray) -> dict[str, float]:
    """Mean squared and absolute error, and R² (1 - SSE / total variance; 0 is predicting the mean)."""
    n, sse, sae, sy, syy = (float(v) for v in sums)
    n = max(n, 1.0)
    total = syy - sy * sy / n
    return {"mse": sse / n, "mae": sae / n, "r2": 1.0 - sse / total if total > 0 else 0.0}


def evaluate_regression(predicted: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """mse, mae and r2 of predictions in the label's units."""
    return regression_scores(error_sums(predicted, y))


def residuals(predicted: np.ndarray, actual: np.ndarray, bins: int = 20, pairs: int = 200) -> dict[str, Any]:
    """A regression's held-out errors: a histogram of actual - predicted, its quantiles, and a sample of
    (actual, predicted) pairs evenly spread over the split, in the label's units."""
    predicted, actual = np.asarray(predicted, dtype=np.float64), np.asarray(actual, dtype=np.float64)
    error = actual - predicted
    counts, edges = np.histogram(error, bins=bins)
    quantiles = np.quantile(error, [0.05, 0.25, 0.5, 0.75, 0.95]) if len(error) else np.zeros(5)
    picked = np.linspace(0, max(len(error) - 1, 0), min(pairs, len(error))).round().astype(int)
    return {
        "task": "regression",
        "residuals": {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]},
        "quantiles": dict(zip(("p5", "p25", "p50", "p75", "p95"), (float(q) for q in quantiles), strict=True)),
        "pairs": [[float(actual[i]), float(predicted[i])] for i in picked],
    }
