"""Held-out metrics of a classifier: the confusion matrix, accuracy and macro-F1."""

from __future__ import annotations

import numpy as np


def confusion(logits: np.ndarray, y: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts of (true class, predicted class): sums across ranks into the whole held-out split's."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (y, logits.argmax(axis=1)), 1)
    return cm


def scores(cm: np.ndarray) -> dict[str, float]:
    """Accuracy and macro-F1 from a confusion matrix."""
    tp = np.diag(cm).astype(np.float64)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    f1 = np.divide(2 * tp, 2 * tp + fp + fn, out=np.zeros_like(tp), where=tp > 0)
    return {"accuracy": float(tp.sum() / max(cm.sum(), 1)), "macro_f1": float(f1.mean())}


def evaluate(logits: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of arg-max predictions."""
    return scores(confusion(logits, y, n_classes))
