"""The built-in architectures, each preceded by the preprocessing fitted on the training data.

Preprocessing is part of the exported graph, so the served model takes the raw float32
features the uploaded dataset holds. Picture datasets reach a factory already normalised, as
images (N x C x H x W): the trainer puts its `ImageInput` layer in front (pictures.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from importlib import metadata

import numpy as np
import torch
from torch import nn

from .errors import DatasetError, UnknownArchitecture


class Standardize(nn.Module):
    """(x - mean) / std with constants fitted on the training split."""

    mean: torch.Tensor  # buffers: saved with the module and exported into the graph
    std: torch.Tensor

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


def mlp(x_train: np.ndarray, n_classes: int, hidden: int = 256) -> nn.Module:
    """A two-hidden-layer perceptron for tabular features: `hidden`, then `hidden`/2 units."""
    if x_train.ndim > 2:  # pictures: flattened, then treated as features
        return nn.Sequential(nn.Flatten(), mlp(x_train.reshape(len(x_train), -1), n_classes, hidden))
    n_features, second = x_train.shape[1], max(hidden // 2, 1)
    return nn.Sequential(
        Standardize(x_train),
        nn.Linear(n_features, hidden),
        nn.ReLU(),
        nn.Dropout(0.1),
        nn.Linear(hidden, second),
        nn.ReLU(),
        nn.Linear(second, n_classes),
    )


def cnn(x_train: np.ndarray, n_classes: int, hidden: int = 32) -> nn.Module:
    """A small convolutional net for images (N x C x H x W), or square single-channel ones as flat pixels.

    `hidden` is the width: convolutions of `hidden` and 2 x `hidden` channels, a dense layer of 4 x `hidden`.
    """
    head, (channels, height, width) = _image_input(x_train, "cnn")
    return nn.Sequential(
        *head,
        nn.Conv2d(channels, hidden, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(hidden, 2 * hidden, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(0.2),
        nn.Linear(2 * hidden * (height // 2) * (width // 2), 4 * hidden),
        nn.ReLU(),
        nn.Linear(4 * hidden, n_classes),
    )


class ResidualBlock(nn.Module):
    """conv-bn-relu-conv-bn plus the identity, then relu."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(),
            nn.Conv2d(channels, channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(x + self.body(x))


def rescnn(x_train: np.ndarray, n_classes: int, hidden: int = 32) -> nn.Module:
    """A small residual CNN (`hidden` channels) for images (N x C x H x W), or square single-channel flat pixels."""
    head, (channels, _, _) = _image_input(x_train, "rescnn")
    return nn.Sequential(
        *head,
        nn.Conv2d(channels, hidden, 3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(),
        ResidualBlock(hidden),
        ResidualBlock(hidden),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(hidden * 4, n_classes),
    )


class TokenBag(nn.Module):
    """Mean of token embeddings (an embedding bag), ignoring padding id 0; unseen ids share one slot.

    Token ids arrive as float32 like every other dataset's features, and are cast inside the graph.
    """

    def __init__(self, vocab: int, dim: int, n_classes: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.embedding = nn.Embedding(vocab + 1, dim, padding_idx=0)  # the extra slot: ids never seen
        self.head = nn.Sequential(nn.Linear(dim, 64), nn.ReLU(), nn.Linear(64, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ids = x.long().clamp(0, self.vocab)
        mask = (ids != 0).unsqueeze(-1).to(torch.float32)
        summed = (self.embedding(ids) * mask).sum(dim=1)
        return self.head(summed / mask.sum(dim=1).clamp(min=1.0))


def textbag(x_train: np.ndarray, n_classes: int, hidden: int = 64) -> nn.Module:
    """A text classifier over tokenised text (rows of token ids, 0 for padding); `hidden`: the embedding size."""
    if x_train.ndim != 2 or np.any(x_train < 0) or np.any(x_train != np.round(x_train)):
        raise DatasetError("architecture 'textbag' needs non-negative integer token ids (0 = padding)")
    return TokenBag(int(x_train.max()) + 1, hidden, n_classes)


def _image_input(x_train: np.ndarray, name: str) -> tuple[list[nn.Module], tuple[int, int, int]]:
    """The layers that turn the training data into images, and the images' (channels, height, width)."""
    if x_train.ndim == 4:  # already images, normalised by the picture pipeline
        channels, height, width = (int(d) for d in x_train.shape[1:])
        if min(height, width) < 4:
            raise DatasetError(f"architecture {name!r} needs images of at least 4x4; these are {height}x{width}")
        return [], (channels, height, width)
    side = _square_side(x_train.shape[1], name)
    return [Standardize(x_train), ToImage(side)], (1, side, side)


def _square_side(n_features: int, name: str) -> int:
    side = math.isqrt(n_features)
    if side * side != n_features or side < 4:
        raise DatasetError(
            f"architecture {name!r} needs square single-channel images as flat pixels (side*side features, "
            f"side >= 4); this dataset has {n_features} features"
        )
    return side


Factory = Callable[[np.ndarray, int], nn.Module]
ARCHITECTURES: dict[str, Factory] = {"mlp": mlp, "cnn": cnn, "rescnn": rescnn, "textbag": textbag}
ENTRY_POINT_GROUP = "fermion.recipes"


def available() -> dict[str, Factory | metadata.EntryPoint]:
    """Built-in architectures and those installed packages register under `fermion.recipes`."""
    found: dict[str, Factory | metadata.EntryPoint] = {
        ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)
    }
    found.update(ARCHITECTURES)  # a package cannot shadow a built-in
    return found


def build(name: str, x_train: np.ndarray, n_classes: int, hidden: int | None = None) -> nn.Module:
    """The named architecture, sized for the data (and, for a built-in, to the width `hidden`)."""
    choices = available()
    factory = choices.get(name)
    if factory is None:
        raise UnknownArchitecture(f"unknown architecture {name!r}; available: {', '.join(sorted(choices))}")
    if hidden is not None:
        if name not in ARCHITECTURES:  # a recipe's factory takes (x_train, n_classes) only
            raise UnknownArchitecture(f"recipe {name!r} has no width knob; leave `hidden` out")
        return ARCHITECTURES[name](x_train, n_classes, hidden)  # type: ignore[call-arg]
    if isinstance(factory, metadata.EntryPoint):
        try:
            factory = factory.load()
        except Exception as exc:  # a user's package can fail to import in any way
            raise UnknownArchitecture(
                f"recipe {name!r} ({factory.value}) failed to load: {type(exc).__name__}: {exc}"
            ) from exc
    module = factory(x_train, n_classes)
    if not isinstance(module, nn.Module):
        raise UnknownArchitecture(f"recipe {name!r} returned {type(module).__name__}, not a torch.nn.Module")
    return module
