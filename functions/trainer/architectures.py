"""The built-in architectures, each preceded by the preprocessing fitted on the training data.

Preprocessing is part of the exported graph, so the served model takes the raw float32
features the uploaded dataset holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from .errors import DatasetError, UnknownArchitecture


class Standardize(nn.Module):
    """(x - mean) / std with constants fitted on the training split."""

    def __init__(self, x_train: np.ndarray) -> None:
        super().__init__()
        mean = x_train.mean(axis=0)
        std = x_train.std(axis=0)
        std[std < 1e-6] = 1.0  # constant features (a blank pixel) pass through centred
        self.register_buffer("mean", torch.from_numpy(mean.astype(np.float32)))
        self.register_buffer("std", torch.from_numpy(std.astype(np.float32)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class ToImage(nn.Module):
    """Flat pixels (batch, side²) → images (batch, 1, side, side)."""

    def __init__(self, side: int) -> None:
        super().__init__()
        self.side = side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(-1, 1, self.side, self.side)


def mlp(x_train: np.ndarray, n_classes: int) -> nn.Module:
    """A two-hidden-layer perceptron for tabular features."""
    n_features = x_train.shape[1]
    return nn.Sequential(
        Standardize(x_train),
        nn.Linear(n_features, 256),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, n_classes),
    )


def cnn(x_train: np.ndarray, n_classes: int) -> nn.Module:
    """A small convolutional net for square single-channel images given as flat pixels."""
    n_features = x_train.shape[1]
    side = math.isqrt(n_features)
    if side * side != n_features or side < 4:
        raise DatasetError(
            f"architecture 'cnn' needs square single-channel images as flat pixels (side*side features, "
            f"side >= 4); this dataset has {n_features} features"
        )
    pooled = side // 2
    return nn.Sequential(
        Standardize(x_train),
        ToImage(side),
        nn.Conv2d(1, 32, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(64 * pooled * pooled, 128),
        nn.ReLU(),
        nn.Linear(128, n_classes),
    )


ARCHITECTURES: dict[str, Callable[[np.ndarray, int], nn.Module]] = {"mlp": mlp, "cnn": cnn}


def build(name: str, x_train: np.ndarray, n_classes: int) -> nn.Module:
    """The named architecture, sized for the data."""
    try:
        factory = ARCHITECTURES[name]
    except KeyError:
        raise UnknownArchitecture(
            f"unknown architecture {name!r}; available: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    return factory(x_train, n_classes)
