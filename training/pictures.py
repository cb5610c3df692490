"""Pictures on the trainer: decoded by fermion.imaging, normalised inside the graph, augmented in training.

`ImageInput` is the first layer of every picture model and so part of its exported graph: it
takes pixels (N x H x W x C, values 0-255 as fermion.imaging decodes them) and scales,
normalises and lays them out (N x C x H x W) exactly as the architecture saw them in training.
Augmentation happens to the pixels before that layer, during training only.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional

from fermion.events import Augmentation, ImageContract
from fermion.imaging import ImageError, Limits, read_archive

from .errors import DatasetError


def load_pictures(path: Path, fmt: str, contract: ImageContract | None) -> tuple[np.ndarray, np.ndarray, ImageContract]:
    """An archive of pictures as float32 pixels (N x H x W x C), their labels, and the contract used."""
    try:
        pictures = read_archive(path.read_bytes(), fmt, contract, Limits())
    except ImageError as exc:
        raise DatasetError(f"not a dataset of pictures: {exc}") from exc
    return pictures.pixels.astype(np.float32), np.asarray(pictures.labels), pictures.contract


def fit_contract(contract: ImageContract, pixels: np.ndarray) -> ImageContract:
    """The contract with `mean` and `std` per channel fitted on the training pixels where it left them out."""
    scaled = pixels.astype(np.float64) * contract.scale
    mean = contract.mean or [float(m) for m in scaled.mean(axis=(0, 1, 2))]
    std = contract.std or [max(float(s), 1e-6) for s in scaled.std(axis=(0, 1, 2))]
    return contract.model_copy(update={"mean": mean, "std": std})


class ImageInput(nn.Module):
    """Pixels (N, H, W, C) in 0-255 → (pixels * scale - mean) / std, laid out (N, C, H, W)."""

    mean: torch.Tensor  # buffers: exported into the graph as constants
    std: torch.Tensor

    def __init__(self, contract: ImageContract) -> None:
        super().__init__()
        if contract.mean is None or contract.std is None:
            raise ValueError("fit the contract's mean and std first (fit_contract)")
        self.scale = float(contract.scale)
        shape = (1, contract.channels, 1, 1)
        self.register_buffer("mean", torch.tensor(contract.mean, dtype=torch.float32).reshape(shape))
        self.register_buffer("std", torch.tensor(contract.std, dtype=torch.float32).reshape(shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.permute(0, 3, 1, 2) * self.scale - self.mean) / self.std


def augment(pixels: torch.Tensor, options: Augmentation, generator: torch.Generator) -> torch.Tensor:
    """A batch of pixels (N, H, W, C) randomly cropped, mirrored and rotated as `options` allow."""
    x = pixels.permute(0, 3, 1, 2)  # N, C, H, W for torch's image ops
    n, _, h, w = x.shape
    if options.crop_padding:
        p = options.crop_padding
        padded = functional.pad(x, (p, p, p, p))
        dy = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        dx = torch.randint(0, 2 * p + 1, (n,), generator=generator)
        x = torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])
    if options.flip:
        flip = torch.rand(n, generator=generator) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    if options.rotation:
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(options.rotation)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros(n)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = functional.affine_grid(theta, list(x.shape), align_corners=False)
        x = functional.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return x.permute(0, 2, 3, 1).contiguous()
