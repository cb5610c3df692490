"""Datasets as arrays: `.npz`, `.csv` with a label column, or archives of pictures; the held-out split."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fermion.events import ImageContract

from .errors import DatasetError
from .pictures import load_pictures

MAX_ROWS = 5_000_000


@dataclass(frozen=True)
class Dataset:
    """Features as float32 rows (or pixels, N x H x W x C), labels as class indices, and the class names."""

    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    image: ImageContract | None = None


def load_dataset(path: Path, fmt: str, label_column: str, image: ImageContract | None = None) -> Dataset:
    """Parse an `.npz` (arrays `x`, `y`), a `.csv` with a header and a label column, or a zip/tar of pictures."""
    contract = None
    if fmt == "npz":
        x, y = _load_npz(path)
    elif fmt == "csv":
        x, y = _load_csv(path, label_column)
    elif fmt in ("zip", "tar"):
        x, y, contract = load_pictures(path, fmt, image)
    else:
        raise DatasetError(f"unsupported dataset format {fmt!r}: use npz, csv, zip or tar")
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


def _load_csv(path: Path, label_column: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:  # its message quotes the bytes: name only where they are
        raise DatasetError(f"csv dataset is not UTF-8 text (at byte {exc.start})") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise DatasetError("csv dataset is empty")
    header, body = rows[0], [r for r in rows[1:] if r]
    if label_column not in header:
        raise DatasetError(f"csv dataset has no label column {label_column!r}; its columns are {header}")
    if len(body) > MAX_ROWS:
        raise DatasetError(f"csv dataset has {len(body)} rows; the limit is {MAX_ROWS}")
    li = header.index(label_column)
    features, labels = [], []
    for n, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise DatasetError(f"csv line {n} has {len(row)} fields; the header has {len(header)}")
        features.append(_numbers(row, li, n, header))
        labels.append(row[li])
    return np.asarray(features, dtype=np.float32).reshape(len(body), len(header) - 1), np.asarray(labels)


def _numbers(row: list[str], label: int, line: int, header: list[str]) -> list[float]:
    """A row's features as floats; a cell that is no number is named by line and column, never by value.

    The value stays out of the message (and, raised `from None`, out of any traceback): messages end
    up in logs, `training.failed` reasons and dead letters, which a dataset's owner may not be alone to read.
    """
    out = []
    for i, v in enumerate(row):
        if i == label:
            continue
        try:
            out.append(float(v))
        except ValueError:
            raise DatasetError(f"csv line {line}, column {i + 1} ({header[i]!r}): the value is not a number") from None
    return out


def split(ds: Dataset, test_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Stratified train/test row indices, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    train: list[np.ndarray] = []
    test: list[np.ndarray] = []
    for cls in range(len(ds.labels)):
        idx = rng.permutation(np.flatnonzero(ds.y == cls))
        n_test = round(len(idx) * test_fraction) if len(idx) > 1 else 0
        test.extend(idx[:n_test])
        train.extend(idx[n_test:])
    if not test:
        raise DatasetError("the held-out split is empty: add rows or raise test_fraction")
    return rng.permutation(np.asarray(train)), np.asarray(test)
