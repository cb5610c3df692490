"""The held-out split: stratified by class for a classifier, at random for a regression; deterministic for a seed."""

from __future__ import annotations

import numpy as np

from .errors import DatasetError


def split_rows(
    y: np.ndarray | None, n_classes: int, test_fraction: float, seed: int, *, rows: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test row indices: per class when `y` holds class indices, else over `rows` rows at random."""
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(y == cls) for cls in range(n_classes)] if y is not None else [np.arange(rows)]
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for group in groups:
        idx = rng.permutation(group)
        n_test = round(len(idx) * test_fraction) if len(idx) > 1 else 0
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    test_idx = np.concatenate(test).astype(np.int64)
    if not len(test_idx):
        raise DatasetError("the held-out split is empty: add rows or raise test_fraction")
    return rng.permutation(np.concatenate(train).astype(np.int64)), test_idx
