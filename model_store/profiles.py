"""Reference profiles: what a version's training inputs and predictions looked like, for drift checks.

Recorded in the manifest at training (`Manifest.profile`). Per feature, the cut points of
`bins` equal-mass bins of the training values and the fraction of training rows that fell in
each (ties make them unequal); per class, how often the trained model predicted it on the
training inputs. Small (a few hundred numbers per feature) and enough for PSI and a binned
Kolmogorov-Smirnov test against any later window.

A table model's features are its columns, by name, in the units `column_values` gives (the same
function must turn served rows into the window the monitor judges). A regression records the
binned distribution of its predictions (`prediction`) instead of class frequencies.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from .features import FeatureSchema

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
    prediction: FeatureProfile | None = None
    """A regression: its predictions on the training inputs, binned (in the label's units)."""


def column_values(schema: FeatureSchema, columns: Mapping[str, Sequence[Any] | np.ndarray]) -> np.ndarray:
    """A table's raw columns as the profile's rows-by-columns float64 values, in the schema's column order.

    Numbers and integers as themselves, booleans 0/1 (text compared with `true_values`), a category as
    its vocabulary position (an unseen value: one past the last); a blank (None, NaN, "") as the imputed value.
    """
    out: list[Any] = []
    for column in schema.columns:
        raw = np.asarray(columns[column.name], dtype=object).reshape(-1)
        if column.kind == "category":
            position = {v: i for i, v in enumerate(column.categories)}
            fill = position.get(str(column.impute), len(column.categories))
            out.append([fill if _blank(v) else position.get(str(v), len(column.categories)) for v in raw])
            continue
        values = [np.nan if _blank(v) else _number(v, column.true_values) for v in raw]
        out.append(np.where(np.isnan(values), float(column.impute or 0.0), values))
    return np.asarray(out, dtype=np.float64).T.reshape(-1, len(schema.columns))


def _blank(v: Any) -> bool:
    return v is None or v == "" or (isinstance(v, float) and np.isnan(v))


def _number(v: Any, true_values: list[str]) -> float:
    if isinstance(v, str) and true_values:
        return 1.0 if v.strip().lower() in true_values else 0.0
    return float(v)


def binned(name: str, column: np.ndarray, bins: int = BINS) -> FeatureProfile:
    """One feature's equal-mass bins."""
    cuts = np.unique(np.quantile(column, np.linspace(0, 1, bins + 1)[1:-1]))
    index = np.searchsorted(cuts, column, side="right")
    fractions = np.bincount(index, minlength=len(cuts) + 1) / len(column)
    return FeatureProfile(
        name=name,
        cuts=[float(c) for c in cuts],
        fractions=[float(f) for f in fractions],
        mean=float(column.mean()),
        std=float(column.std()),
    )


def build_profile(
    x: np.ndarray,
    predicted: np.ndarray | None,
    n_classes: int,
    names: list[str] | None = None,
    bins: int = BINS,
    *,
    values: np.ndarray | None = None,
) -> Profile:
    """The profile of training features `x` (rows by features) and the class indices predicted for them.

    A regression gives its predicted `values` instead (bins of them are recorded, not class frequencies).
    """
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    names = names or [f"f{i}" for i in range(x.shape[1])]
    features = [binned(name, x[:, i], bins) for i, name in enumerate(names if x.shape[1] <= MAX_FEATURES else [])]
    classes: list[float] = []
    if predicted is not None and n_classes:
        classes = [float(f) for f in np.bincount(predicted, minlength=n_classes)[:n_classes] / max(len(predicted), 1)]
    prediction = binned("prediction", np.asarray(values, dtype=np.float64), bins) if values is not None else None
    return Profile(rows=len(x), features=features, classes=classes, prediction=prediction)
