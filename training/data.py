"""Datasets as arrays: `.npz`, tables (`.csv`, `.parquet`: training/tables.py), or archives of pictures; the split."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fermion.events import ImageContract
from fermion.model_store.features import FeatureSchema, Task

from .errors import DatasetError
from .pictures import load_pictures
from .splits import split_rows


@dataclass(frozen=True)
class Dataset:
    """Features as float32 rows (or pixels, N x H x W x C), labels as class indices, and the class names.

    A table's rows are its columns encoded (training/tables.py) and `schema` says how; a regression's
    `y` holds the target values (float32) and `labels` is empty.
    """

    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    image: ImageContract | None = None
    schema: FeatureSchema | None = None
    sample: Any = None
    """A table's raw rows (a pyarrow.Table of up to 20,000 rows): the graph's parity check and drift profile."""

    @property
    def task(self) -> Task:
        """Classification, or regression (a table with a continuous label)."""
        return self.schema.task if self.schema is not None else "classification"

    @property
    def outputs(self) -> int:
        """The network's output width: one per class, or one value."""
        return 1 if self.task == "regression" else len(self.labels)


def load_dataset(
    path: Path,
    fmt: str,
    label_column: str | None,
    image: ImageContract | None = None,
    *,
    task: Task | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> Dataset:
    """Parse an `.npz` (arrays `x`, `y`), a table (`.csv` with a header, `.parquet`), or a zip/tar of pictures.

    A table's preparation is fitted on the training rows of the split `test_fraction` and `seed` make.
    """
    contract = None
    if fmt in ("csv", "parquet"):
        from .tables import load_table  # pyarrow: only tables need it

        table = load_table(path, fmt, label_column, task, test_fraction, seed)
        return Dataset(table.x, table.y, table.schema.classes, schema=table.schema, sample=table.sample)
    if fmt == "npz":
        x, y = _load_npz(path)
    elif fmt in ("zip", "tar"):
        x, y, contract = load_pictures(path, fmt, image)
    else:
        raise DatasetError(f"unsupported dataset format {fmt!r}: use npz, csv, parquet, zip or tar")
    if x.ndim != (2 if contract is None else 4) or len(x) != len(y):
        raise DatasetError(f"features must be rows by columns matching the labels; got x {x.shape}, y {y.shape}")
    if len(x) < 10:
        raise DatasetError(f"dataset has {len(x)} rows; at least 10 are needed to train and evaluate")
    if not np.all(np.isfinite(x)):
        raise DatasetError("dataset features contain NaN or infinity")
    classes, y_idx = np.unique(y.astype(str) if y.dtype.kind in "OUS" else y, return_inverse=True)
    if len(classes) < 2:
        raise DatasetError("dataset has a single class; a classifier needs at least two")  # the value stays out
    return Dataset(x.astype(np.float32), y_idx.astype(np.int64), [str(c) for c in classes], contract)


def _load_npz(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = {"x", "y"} - set(npz.files)
            if missing:
                raise DatasetError(f"npz dataset lacks array(s) {sorted(missing)}; it has {sorted(npz.files)}")
            x, y = npz["x"], npz["y"]
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise DatasetError(f"not a readable .npz file: {exc}") from exc
    if x.dtype.kind not in "fiub":
        raise DatasetError(f"npz array 'x' must be numeric; it is {x.dtype}")
    if x.ndim > 2:
        x = x.reshape(len(x), -1)
    return x, y.reshape(-1)


def split(ds: Dataset, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Train/test row indices (stratified for a classifier), deterministic for a seed."""
    if ds.task == "regression":
        return split_rows(None, 0, test_fraction, seed, rows=len(ds.y))
    return split_rows(ds.y, len(ds.labels), test_fraction, seed)
