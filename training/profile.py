"""The reference profile a version's manifest records: its training inputs and what it predicted on them."""

from __future__ import annotations

import numpy as np
import torch

from fermion.model_store.profiles import Profile, build_profile

from .data import Dataset
from .loop import Trained

MAX_ROWS = 20_000


def reference_profile(ds: Dataset, trained: Trained) -> Profile:
    """Bins of the training features and the trained model's class frequencies on them (a sample of rows)."""
    rows = ds.x if len(ds.x) <= MAX_ROWS else ds.x[np.random.default_rng(0).choice(len(ds.x), MAX_ROWS, replace=False)]
    trained.module.eval()
    with torch.no_grad():
        predicted = trained.module(torch.from_numpy(rows)).argmax(dim=1).numpy()
    return build_profile(rows, predicted, len(ds.labels))
