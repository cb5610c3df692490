"""Training on pictures: the contract fitted on the training split, augmentation for training only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fermion.events import Augmentation, ImageContract, Recipe
from fermion.training.data import Dataset, load_dataset
from fermion.training.errors import DatasetError
from fermion.training.loop import train
from fermion.training.pictures import augment, fit_contract
from tests.helpers.pictures import zip_bytes


def _batch() -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(0).integers(0, 256, (6, 10, 12, 3)).astype(np.float32))


def test_flip_mirrors_some_pictures_and_crop_shifts_them_within_the_padding() -> None:
    x = _batch()
    flipped = augment(x, Augmentation(flip=True), torch.Generator().manual_seed(1))
    mirrored = [bool(torch.equal(f, p.flip(1))) for f, p in zip(flipped, x, strict=True)]
    kept = [bool(torch.equal(f, p)) for f, p in zip(flipped, x, strict=True)]
    assert all(m or k for m, k in zip(mirrored, kept, strict=True)) and any(mirrored)
    cropped = augment(x, Augmentation(crop_padding=2), torch.Generator().manual_seed(2))
    assert cropped.shape == x.shape
    padded = torch.nn.functional.pad(x, (0, 0, 2, 2, 2, 2))  # N, H+4, W+4, C
    windows = [
        [torch.equal(c, p[dy : dy + 10, dx : dx + 12]) for dy in range(5) for dx in range(5)]
        for c, p in zip(cropped, padded, strict=True)
    ]
    assert all(any(w) for w in windows)  # each is a window of the padded picture...
    assert not all(w[12] for w in windows)  # ...and not always the centred one


def test_rotation_is_random_but_seeded_and_keeps_the_shape() -> None:
    x = _batch()
    a = augment(x, Augmentation(rotation=30), torch.Generator().manual_seed(3))
    b = augment(x, Augmentation(rotation=30), torch.Generator().manual_seed(3))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, x)
    same = augment(x, Augmentation(), torch.Generator().manual_seed(3))
    assert torch.equal(same, x)


def test_the_contract_is_fitted_on_training_pixels_unless_given() -> None:
    pixels = np.full((4, 4, 4, 1), 255.0, np.float32)
    pixels[:2] = 0
    fitted = fit_contract(ImageContract(height=4, width=4), pixels)
    assert fitted.mean == pytest.approx([0.5]) and fitted.std == pytest.approx([0.5])
    given = fit_contract(ImageContract(height=4, width=4, mean=[0.1], std=[0.2]), pixels)
    assert (given.mean, given.std) == ([0.1], [0.2])
    with pytest.raises(ValueError, match="one value per channel"):
        ImageContract(channels=3, mean=[0.5])


def test_augmented_training_runs_and_records_the_fitted_contract() -> None:
    rng = np.random.default_rng(0)
    y = np.arange(40) % 2
    x = rng.integers(0, 60, (40, 8, 8, 1)).astype(np.float32)
    x[y == 1, :, :4] += 180
    recipe = Recipe(architecture="rescnn", epochs=2, augment=Augmentation(crop_padding=1, flip=True, rotation=10))
    trained = train(Dataset(x, y, ["a", "b"], ImageContract(height=8, width=8)), recipe)
    assert trained.image is not None and trained.image.mean is not None and len(trained.image.std or []) == 1
    trained.module.eval()
    with torch.no_grad():  # no augmentation outside training: the same pixels give the same answer
        first, second = trained.module(torch.from_numpy(x[:3])), trained.module(torch.from_numpy(x[:3]))
    assert torch.equal(first, second)


def test_a_bad_archive_fails_the_job_with_a_reason(tmp_path: Path) -> None:
    (tmp_path / "d.zip").write_bytes(zip_bytes({"a/1.png": b"nope", "b/1.png": b"nope"}))
    with pytest.raises(DatasetError, match=r"not a dataset of pictures: .*a/1.png"):
        load_dataset(tmp_path / "d.zip", "zip", "label")
