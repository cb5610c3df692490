"""Load a dataset, train a recipe's architecture on it, evaluate on a held-out split."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fermion.events import ImageContract, Recipe

from .architectures import build
from .errors import DatasetError
from .pictures import ImageInput, augment, fit_contract, load_pictures

MAX_ROWS = 5_000_000


@dataclass(frozen=True)
class Dataset:
    """Features as float32 rows (or pixels, N x H x W x C), labels as class indices, and the class names."""

    x: np.ndarray
    y: np.ndarray
    labels: list[str]
    image: ImageContract | None = None


@dataclass(frozen=True)
class Trained:
    """A trained module, its held-out metrics and the held-out features (for the parity check)."""

    module: nn.Module
    metrics: dict[str, float]
    x_test: np.ndarray
    y_test: np.ndarray
    x_calibration: np.ndarray
    labels: list[str]
    duration_s: float
    image: ImageContract | None = None
    """The image contract, mean and std fitted: what the manifest records."""


ProgressFn = Callable[[int, int, float, dict[str, float]], None]


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
        raise DatasetError(f"dataset has a single class ({classes[0]!r}); a classifier needs at least two")
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
    except UnicodeDecodeError as exc:
        raise DatasetError(f"csv dataset is not UTF-8 text: {exc}") from exc
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
        try:
            features.append([float(v) for i, v in enumerate(row) if i != li])
        except ValueError as exc:
            raise DatasetError(f"csv line {n}: a feature is not a number ({exc})") from exc
        labels.append(row[li])
    return np.asarray(features, dtype=np.float32).reshape(len(body), len(header) - 1), np.asarray(labels)


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


def evaluate(logits: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy and macro-F1 of arg-max predictions."""
    pred = logits.argmax(axis=1)
    f1s = []
    for c in range(n_classes):
        tp = float(np.sum((pred == c) & (y == c)))
        fp = float(np.sum((pred == c) & (y != c)))
        fn = float(np.sum((pred != c) & (y == c)))
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return {"accuracy": float(np.mean(pred == y)), "macro_f1": float(np.mean(f1s))}


def train(ds: Dataset, recipe: Recipe, on_epoch: ProgressFn | None = None) -> Trained:
    """Train the recipe's architecture and evaluate it on the held-out split."""
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    x_train, y_train = ds.x[train_idx], ds.y[train_idx]
    x_test, y_test = ds.x[test_idx], ds.y[test_idx]
    contract = fit_contract(ds.image, x_train) if ds.image is not None else None
    if contract is None:
        module = build(recipe.architecture, x_train, len(ds.labels))
    else:  # the architecture sees normalised N x C x H x W images; the graph takes pixels
        pre = ImageInput(contract)
        with torch.no_grad():
            net = build(recipe.architecture, pre(torch.from_numpy(x_train)).numpy(), len(ds.labels))
        module = nn.Sequential(pre, net)
    optimiser = torch.optim.AdamW(module.parameters(), lr=recipe.learning_rate)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)
    generator = torch.Generator().manual_seed(recipe.seed)
    metrics: dict[str, float] = {}
    for epoch in range(1, recipe.epochs + 1):
        module.train()
        order = torch.randperm(len(xt), generator=generator)
        total = 0.0
        for start in range(0, len(order), recipe.batch_size):
            batch = order[start : start + recipe.batch_size]
            xb = xt[batch]
            if recipe.augment is not None and contract is not None:  # training pictures only
                xb = augment(xb, recipe.augment, generator)
            optimiser.zero_grad()
            loss = loss_fn(module(xb), yt[batch])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        metrics = _eval(module, x_test, y_test, len(ds.labels))
        if on_epoch:
            on_epoch(epoch, recipe.epochs, total / len(xt), metrics)
    module.eval()
    calibration = x_train[: min(len(x_train), 512)]  # for static int8 quantisation: training data only
    return Trained(module, metrics, x_test, y_test, calibration, ds.labels, time.perf_counter() - started, contract)


def _eval(module: nn.Module, x: np.ndarray, y: np.ndarray, n_classes: int) -> dict[str, float]:
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(x)).numpy()
    return evaluate(logits, y, n_classes)
