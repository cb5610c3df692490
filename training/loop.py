"""Load a dataset, train a recipe's architecture on it, evaluate on a held-out split."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn import functional
from torch.nn.parallel import DistributedDataParallel

from fermion.events import ImageContract, Recipe

from .architectures import build
from .checkpoints import Checkpointer, epoch_seed
from .data import Dataset, split
from .distillation import Criterion
from .metrics import confusion, error_sums, evaluation, regression_scores, residuals, scores
from .pictures import ImageInput, augment, fit_contract


@dataclass(frozen=True)
class Trained:
    """A trained module, its held-out metrics and the held-out features (for the parity check)."""

    module: nn.Module
    metrics: dict[str, float]
    x_test: np.ndarray
    y_test: np.ndarray
    """Held-out class indices, or a regression's target values."""
    x_calibration: np.ndarray
    labels: list[str]
    duration_s: float
    image: ImageContract | None = None
    """The image contract, mean and std fitted: what the manifest records."""
    evaluation: dict[str, Any] | None = None
    """The last epoch's held-out confusion matrix and per-class scores (metrics.evaluation)."""


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


def epoch_order(n: int, world: int, rank: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's positions in the training rows for one epoch: DistributedSampler's, as one tensor.

    The same shuffle (randperm seeded with seed + epoch), padding and striding as
    `DistributedSampler(shuffle=True, drop_last=False)`, without its list of Python ints: 2 M rows
    made that list ~60 MB, a third of a 20-column float32 table.
    """
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed + epoch))
    total = -(-n // world) * world
    if total > n:  # pad by repeating from the start, evenly divisible across ranks
        perm = torch.cat([perm] * (total // n) + [perm[: total % n]])
    return perm[rank:total:world]


def train(
    ds: Dataset,
    recipe: Recipe,
    on_epoch: ProgressFn | None = None,
    checkpointer: Checkpointer | None = None,
    ranks: Ranks = Ranks(),
    teacher: np.ndarray | None = None,
) -> Trained:
    """Train the recipe's architecture and evaluate it on the held-out split.

    With a checkpointer the job resumes from its newest checkpoint and saves as it goes; with `ranks`
    of a world larger than one (an initialised torch.distributed group) it is one rank of a
    data-parallel job: rows are sharded per rank, gradients averaged, metrics reduced across ranks.
    With `teacher` (a teacher's logits for every row of `ds`) and the recipe's `distill`, the loss
    blends its soft targets with the labels (distillation.py).
    """
    started = time.perf_counter()
    torch.manual_seed(recipe.seed)  # the same initial weights on every rank
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    y_test = ds.y[test_idx]  # the held-out rows are gathered chunk by chunk: no copy of them while training
    module, contract = _module(ds, recipe, train_idx)
    optimiser = torch.optim.AdamW(module.parameters(), lr=recipe.learning_rate)
    history: list[dict[str, Any]] = []
    first = 1
    if checkpointer and (restored := checkpointer.restore(module, optimiser)) is not None:
        history, first = restored.history, restored.epoch + 1
        if on_epoch and history:
            last = history[-1]
            extra = {**ranks.report([]), "resumed_at": restored.epoch, "val_loss": last.get("val_loss")}
            on_epoch(restored.epoch, recipe.epochs, last["loss"], last["metrics"], **extra)
    net = ranks.wrap(module)
    # Every row stays where it is; batches index them through the training rows (no copy of a large table).
    xt, yt = torch.from_numpy(ds.x).to(ranks.device), torch.from_numpy(_targets(ds)).to(ranks.device)
    rows = torch.from_numpy(train_idx).to(ranks.device)
    per_rank_batch = max(1, -(-recipe.batch_size // ranks.world))  # the recipe's batch is the global one
    soft = None if teacher is None else torch.from_numpy(teacher).to(ranks.device)
    loss_fn: Any = Criterion(recipe.distill if soft is not None else None, soft)
    if ds.task == "regression":
        loss_fn = _squared_error
    metrics: dict[str, float] = dict(history[-1]["metrics"]) if history else {}
    for epoch in range(first, recipe.epochs + 1):
        torch.manual_seed(epoch_seed(recipe.seed, epoch, ranks.rank))
        pictures = torch.Generator().manual_seed(epoch_seed(recipe.seed, epoch, ranks.rank))  # augmentation
        order = epoch_order(len(rows), ranks.world, ranks.rank, recipe.seed, epoch).to(ranks.device)
        net.train()
        total, tick = 0.0, time.perf_counter()
        for start in range(0, len(order), per_rank_batch):
            batch = rows[order[start : start + per_rank_batch]]
            xb = xt[batch]
            if recipe.augment is not None and contract is not None:  # training pictures only
                xb = augment(xb.cpu(), recipe.augment, pictures).to(ranks.device)
            optimiser.zero_grad()
            loss = loss_fn(net(xb), yt[batch], batch)
            loss.backward()
            optimiser.step()
            total += loss.item() * len(batch)
        rate = len(order) / max(time.perf_counter() - tick, 1e-9)
        mean_loss, held_out, rates = _reduce(module, ds.x, test_idx, y_test, ds, ranks, total, len(order), rate)
        metrics = held_out.metrics
        if history:  # only the newest epoch keeps its confusion matrix: a checkpoint stays small
            history[-1].pop("confusion", None)
        history.append(
            {"loss": mean_loss, "val_loss": held_out.loss, "metrics": metrics, "confusion": held_out.confusion}
        )
        if checkpointer and checkpointer.due(epoch, recipe.epochs):
            checkpointer.save(epoch, module, optimiser, history, recipe.epochs)
        if on_epoch:
            on_epoch(epoch, recipe.epochs, mean_loss, metrics, val_loss=held_out.loss, **ranks.report(rates))
    module.eval().to("cpu")  # exported and checked on the CPU
    del xt, yt, rows
    x_test = ds.x[test_idx]  # what the export is checked on: copied once the training's tensors are gone
    calibration = ds.x[train_idx[:512]]  # for static int8 quantisation: training data only
    evaluated = (
        last_evaluation(history, ds) if ds.task != "regression" else regression_evaluation(module, x_test, y_test, ds)
    )
    took = time.perf_counter() - started
    return Trained(module, metrics, x_test, y_test, calibration, ds.labels, took, contract, evaluated)


def last_evaluation(history: list[dict[str, Any]], ds: Dataset) -> dict[str, Any] | None:
    """The newest epoch's confusion matrix and per-class scores (None from a checkpoint that predates them)."""
    cm = history[-1].get("confusion") if history else None
    return evaluation(np.asarray(cm, dtype=np.int64), ds.labels) if cm is not None else None


def regression_evaluation(module: nn.Module, x: np.ndarray, y: np.ndarray, ds: Dataset) -> dict[str, Any] | None:
    """A regression's residuals on the held-out split, in the label's units (metrics.residuals)."""
    if ds.schema is None or ds.schema.target is None:
        return None
    t = ds.schema.target
    with torch.no_grad():  # in chunks, as the epochs' evaluation
        out = [module(torch.from_numpy(x[i : i + EVAL_ROWS]))[:, 0].numpy() for i in range(0, len(x), EVAL_ROWS)]
    predicted = np.concatenate(out).astype(np.float64) * t.std + t.mean if out else np.zeros(0)
    return residuals(predicted, y, pairs=200)


@dataclass(frozen=True)
class HeldOut:
    """One epoch's evaluation on the held-out split, over every rank."""

    loss: float
    """Mean cross-entropy against the labels (the validation loss; no distillation term)."""
    metrics: dict[str, float]
    confusion: list[list[int]] | None
    """None for a regression."""


SIZING_ROWS = 100_000


def _module(ds: Dataset, recipe: Recipe, train_idx: np.ndarray) -> tuple[nn.Module, ImageContract | None]:
    """The recipe's network sized on the training rows, and a picture dataset's fitted contract."""
    contract = fit_contract(ds.image, ds.x[train_idx]) if ds.image is not None else None
    if contract is None:  # a large table sizes the network on a sample: no copy of its training rows
        sizing = ds.x[np.sort(train_idx[:SIZING_ROWS])] if ds.schema is not None else ds.x[train_idx]
        return build(recipe.architecture, sizing, ds.outputs, recipe.hidden), None
    pre = ImageInput(contract)  # the architecture sees normalised N x C x H x W images; the graph takes pixels
    with torch.no_grad():
        net = build(recipe.architecture, pre(torch.from_numpy(ds.x[train_idx])).numpy(), ds.outputs, recipe.hidden)
    return nn.Sequential(pre, net), contract


def _targets(ds: Dataset) -> np.ndarray:
    """What the network learns: class indices, or a regression's target standardised (float32)."""
    return _targets_of(ds, ds.y)


def _targets_of(ds: Dataset, y: np.ndarray) -> np.ndarray:
    """`y` as the network learns it: class indices as they are, a regression's target standardised."""
    if ds.task != "regression" or ds.schema is None or ds.schema.target is None:
        return y
    t = ds.schema.target
    return ((y.astype(np.float64) - t.mean) / t.std).astype(np.float32)


def _squared_error(out: torch.Tensor, target: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    return functional.mse_loss(out[:, 0], target)


EVAL_ROWS = 16_384
"""Held-out rows evaluated per forward pass (a smaller split is evaluated in one, as it always was)."""


def _mine(x: np.ndarray, held: np.ndarray, ranks: Ranks, start: int) -> np.ndarray:
    """Held-out rows start .. start + EVAL_ROWS of this rank's share (every world-th from its rank) of `x[held]`."""
    first = ranks.rank + start * ranks.world
    return x[held[first : first + EVAL_ROWS * ranks.world : ranks.world]]


def _reduce(
    module: nn.Module,
    x: np.ndarray,
    held: np.ndarray,
    y: np.ndarray,
    ds: Dataset,
    ranks: Ranks,
    loss_sum: float,
    rows: int,
    rate: float,
) -> tuple[float, HeldOut, list[float]]:
    """The epoch's mean training loss, its held-out evaluation (rows `held` of `x`, labels `y`) and per-rank
    samples/s, over every rank.

    Each rank evaluates its share of the held-out rows; one all-reduce sums the losses, the row
    counts, the confusion matrices and the per-rank throughputs.
    """
    mine = slice(ranks.rank, None, ranks.world)
    regression = ds.task == "regression" and ds.schema is not None and ds.schema.target is not None
    val_sum, outputs, ys = 0.0, [], y[mine]
    module.eval()
    with torch.no_grad():  # in chunks: a large held-out split's activations never exist all at once
        for start in range(0, len(ys), EVAL_ROWS):
            chunk = _mine(x, held, ranks, start)
            out = module(torch.from_numpy(chunk).to(ranks.device))
            if regression:
                target = torch.from_numpy(_targets_of(ds, ys[start : start + EVAL_ROWS])).to(ranks.device)
                val_sum += float(functional.mse_loss(out[:, 0], target, reduction="sum"))
            else:
                target = torch.from_numpy(ys[start : start + EVAL_ROWS]).long().to(ranks.device)
                val_sum += float(nn.functional.cross_entropy(out, target, reduction="sum"))
            outputs.append(out.cpu().numpy())
    width = 1 if regression else len(ds.labels)
    logits = np.concatenate(outputs) if outputs else np.zeros((0, width), dtype=np.float32)
    n = len(ds.labels)
    if regression:
        assert ds.schema is not None and ds.schema.target is not None
        t = ds.schema.target
        sums = error_sums(logits[:, 0].astype(np.float64) * t.std + t.mean, ys)
    else:
        sums = confusion(logits, ys, n).ravel()
    rates = np.zeros(ranks.world)
    rates[ranks.rank] = rate
    flat = np.concatenate([[loss_sum, rows, val_sum, len(ys)], rates, sums])
    flat = ranks.sum(flat)
    loss = float(flat[0] / max(flat[1], 1))
    val_loss = float(flat[2] / max(flat[3], 1))
    rates = flat[4 : 4 + ranks.world]
    tail = flat[4 + ranks.world :]
    if regression:
        held_out = HeldOut(val_loss, regression_scores(tail), None)
    else:
        cm = tail.reshape(n, n).round().astype(np.int64)
        held_out = HeldOut(val_loss, scores(cm), cm.tolist())
    return loss, held_out, [round(float(r), 1) for r in rates]
