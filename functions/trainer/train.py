"""Load a dataset, train a recipe's architecture on it, evaluate on a held-out split."""

from __future__ import annotations

import csv
import io
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DistributedSampler, TensorDataset

from fermion.events import ImageContract, Recipe

from .architectures import build
from .checkpointing import Checkpointer, epoch_seed
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


class ProgressFn(Protocol):
    """Told after every epoch; extra keywords are ProgressReport fields (resumed_at, workers, ...)."""

    def __call__(self, epoch: int, epochs: int, loss: float, metrics: dict[str, float], **extra: Any) -> None: ...


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel job; the default is a job of one process."""

    rank: int = 0
    world: int = 1
    restarts: int = 0
    device: str = "cpu"
    """"cuda:<local rank>" for a rank of an NCCL group; "cpu" (gloo, or no group) otherwise."""

    def wrap(self, module: nn.Module) -> nn.Module:
        """The module as this rank trains it: wrapped by DDP, which averages gradients, in a world > 1."""
        module.to(self.device)
        if self.world == 1:
            return module
        return DistributedDataParallel(module, device_ids=[self.device] if self.device != "cpu" else None)

    def sum(self, values: np.ndarray) -> np.ndarray:
        """Element-wise sum over every rank."""
        if self.world == 1:
            return values
        tensor = torch.from_numpy(values.astype(np.float64)).to(self.device)
        dist.all_reduce(tensor)
        return tensor.cpu().numpy()

    def report(self, rates: list[float]) -> dict[str, Any]:
        """What a progress event says about the ranks."""
        return {"workers": self.world, "restarts": self.restarts, "samples_per_s": rates}


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


def train(
    ds: Dataset,
    recipe: Recipe,
    on_epoch: ProgressFn | None = None,
    checkpointer: Checkpointer | None = None,
    ranks: Ranks = Ranks(),
) -> Trained:
    """Train the recipe's architecture and evaluate it on the held-out split.

    With a checkpointer the job resumes from its newest checkpoint and saves as it goes; with `ranks`
    of a world larger than one (an initialised torch.distributed group) it is one rank of a
    data-parallel job: rows are sharded per rank, gradients averaged, metrics reduced across ranks.
    """
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)  # the same initial weights on every rank
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
    history: list[dict[str, Any]] = []
    first = 1
    if checkpointer and (restored := checkpointer.restore(module, optimiser)) is not None:
        history, first = restored.history, restored.epoch + 1
        if on_epoch and history:
            last = history[-1]
            extra = {**ranks.report([]), "resumed_at": restored.epoch}
            on_epoch(restored.epoch, recipe.epochs, last["loss"], last["metrics"], **extra)
    net = ranks.wrap(module)
    xt, yt = torch.from_numpy(x_train).to(ranks.device), torch.from_numpy(y_train).to(ranks.device)
    sampler: DistributedSampler[int] = DistributedSampler(
        TensorDataset(xt), num_replicas=ranks.world, rank=ranks.rank, shuffle=True, seed=recipe.seed
    )
    per_rank_batch = max(1, -(-recipe.batch_size // ranks.world))  # the recipe's batch is the global one
    loss_fn = nn.CrossEntropyLoss()
    metrics: dict[str, float] = dict(history[-1]["metrics"]) if history else {}
    for epoch in range(first, recipe.epochs + 1):
        torch.manual_seed(epoch_seed(recipe.seed, epoch, ranks.rank))
        pictures = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, ranks.rank))  # augmentation
        sampler.set_epoch(epoch)
        order = torch.tensor(list(sampler), dtype=torch.long, device=ranks.device)
        net.train()
        total, tick = 0.0, time.perf_counter()
        for start in range(0, len(order), per_rank_batch):
            batch = order[start : start + per_rank_batch]
            xb = xt[batch]
            if recipe.augment is not None and contract is not None:  # training pictures only
                xb = augment(xb.cpu(), recipe.augment, pictures).to(ranks.device)
            optimiser.zero_grad()
            loss = loss_fn(net(xb), yt[batch])
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        rate = len(order) / max(time.perf_counter() - tick, 1e-9)
        mean_loss, metrics, rates = _reduce(module, x_test, y_test, len(ds.labels), ranks, total, len(order), rate)
        history.append({"loss": mean_loss, "metrics": metrics})
        if checkpointer and checkpointer.due(epoch, recipe.epochs):
            checkpointer.save(epoch, module, optimiser, history, recipe.epochs)
        if on_epoch:
            on_epoch(epoch, recipe.epochs, mean_loss, metrics, **ranks.report(rates))
    module.eval().to("cpu")  # exported and checked on the CPU
    calibration = x_train[: min(len(x_train), 512)]  # for static int8 quantisation: training data only
    return Trained(module, metrics, x_test, y_test, calibration, ds.labels, time.perf_counter() - started, contract)


def _reduce(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    n_classes: int,
    ranks: Ranks,
    loss_sum: float,
    rows: int,
    rate: float,
) -> tuple[float, dict[str, float], list[float]]:
    """The epoch's mean loss, held-out metrics and per-rank samples/s, over every rank.

    Each rank evaluates its share of the held-out rows; one all-reduce sums the losses, the row
    counts, the confusion matrices and the per-rank throughputs.
    """
    mine = slice(ranks.rank, None, ranks.world)
    module.eval()
    with torch.no_grad():
        logits = module(torch.from_numpy(x[mine]).to(ranks.device)).cpu().numpy()
    cm = confusion(logits, y[mine], n_classes)
    rates = np.zeros(ranks.world)
    rates[ranks.rank] = rate
    flat = np.concatenate([[loss_sum, rows], rates, cm.ravel()])
    flat = ranks.sum(flat)
    loss = float(flat[0] / max(flat[1], 1))
    rates = flat[2 : 2 + ranks.world]
    cm = flat[2 + ranks.world :].reshape(n_classes, n_classes)
    return loss, scores(cm), [round(float(r), 1) for r in rates]
