"""Reference profiles: what a version's training inputs and predictions looked like, for drift checks.

Recorded in the manifest at training (`Manifest.profile`). Per feature, the cut points of
`bins` equal-mass bins of the training values and the fraction of training rows that fell in
each (ties make them unequal); per class, how often the trained model predicted it on the
training inputs. Small (a few hundred numbers per feature) and enough for PSI and a binned
Kolmogorov-Smirnov test against any later window.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

BINS = 20
MAX_FEATURES = 256  # wider inputs (images) keep only class frequencies: per-pixel bins would bloat the manifest


class FeatureProfile(BaseModel):
    """One input feature's training distribution, binned."""

    model_config = ConfigDict(frozen=True)

    name: str
    cuts: list[float]
    """Interior bin edges (ascending, len(fractions) - 1 of them)."""
    fractions: list[float]
    mean: float
    std: float

    def counts(self, values: np.ndarray) -> np.ndarray:
        """How many of `values` fall in each bin."""
        index = np.searchsorted(np.asarray(self.cuts), values, side="right")
        return np.bincount(index, minlength=len(self.fractions))


class Profile(BaseModel):
    """A version's reference: per-feature bins and predicted-class frequencies on its training inputs."""

    model_config = ConfigDict(frozen=True)

    rows: int = Field(ge=1)
    features: list[FeatureProfile]
    classes: list[float] = []
    """Predicted-class frequencies, in the order of the manifest's labels."""


def build_profile(
    x: np.ndarray, predicted: np.ndarray | None, n_classes: int, names: list[str] | None = None, bins: int = BINS
) -> Profile:
    """The profile of training features `x` (rows by features) and the class indices predicted for them."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    names = names or [f"f{i}" for i in range(x.shape[1])]
    features = []
    for i, name in enumerate(names if x.shape[1] <= MAX_FEATURES else []):
        column = x[:, i]
        cuts = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
        index = np.searchsorted(cuts, column, side="right")
        fractions = np.bincount(index, minlength=len(cuts) + 1) / len(column)
        features.append(
            FeatureProfile(
                name=name,
                cuts=[float(c) for c in cuts],
                fractions=[float(f) for f in fractions],
                mean=float(column.mean()),
                std=float(column.std()),
            )
        )
    classes: list[float] = []
    if predicted is not None and n_classes:
        classes = [float(f) for f in np.bincount(predicted, minlength=n_classes)[:n_classes] / max(len(predicted), 1)]
    return Profile(rows=len(x), features=features, classes=classes)
