"""Labelled rows from an .npz file (arrays x and y), with labels mapped to the federation's class order."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .errors import FederationError


def load_labelled(path: Path, labels: list[str], n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """float32 rows and class indices into `labels`; FederationError says what does not fit."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            x, y = npz["x"], npz["y"]
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        raise FederationError(f"{path.name}: not an .npz with arrays x and y: {exc}") from exc
    x = x.reshape(len(x), -1).astype(np.float32)
    if x.shape[1] != n_features or len(x) != len(y) or not len(x):
        raise FederationError(f"{path.name}: x is {list(x.shape)} for {len(y)} labels; the model takes {n_features}")
    if not np.all(np.isfinite(x)):
        raise FederationError(f"{path.name}: features hold NaN or infinity")
    index = {label: i for i, label in enumerate(labels)}
    names = [str(v) for v in y.tolist()]
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise FederationError(f"{path.name}: labels {unknown[:5]} are not among the federation's {labels[:20]}")
    return x, np.asarray([index[n] for n in names], dtype=np.int64)
