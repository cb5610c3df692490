"""Classic classifiers on a dataset: scikit-learn, XGBoost and LightGBM, fitted and evaluated without torch.

The recipe's `architecture` names one of `ESTIMATORS` (the catalog lists the same names, torch-free);
the held-out split, the seed and the metrics are the torch recipes' own (`data.split`,
`metrics.evaluate`), so a classic version and a torch version of one dataset compare like for like.
A classic fit has no epochs: it reports one progress step when it is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fermion.events import Recipe

from .data import Dataset, split
from .errors import DatasetError, UnknownArchitecture
from .metrics import evaluate

INSTALL = "pip install 'fermion[classic]'"


def _hist_gradient_boosting(recipe: Recipe) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(max_iter=recipe.epochs * 5, random_state=recipe.seed)


def _logistic(recipe: Recipe) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, random_state=recipe.seed))


def _xgboost(recipe: Recipe) -> Any:
    from xgboost import XGBClassifier

    return XGBClassifier(n_estimators=recipe.epochs * 5, random_state=recipe.seed, n_jobs=1)


def _lightgbm(recipe: Recipe) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(n_estimators=recipe.epochs * 5, random_state=recipe.seed, n_jobs=1, verbose=-1)


# Trees: `epochs` x 5 boosting rounds (the default 20 epochs: 100 rounds, each library's own default).
ESTIMATORS: dict[str, Callable[[Recipe], Any]] = {
    "sklearn:hist_gradient_boosting": _hist_gradient_boosting,
    "sklearn:logistic": _logistic,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
}


def is_classic(architecture: str) -> bool:
    """Whether the architecture is a classic estimator (trained here, not by the torch loop)."""
    return architecture in ESTIMATORS


@dataclass(frozen=True)
class Fitted:
    """A fitted estimator, its held-out metrics and rows (for the parity check), and the class names."""

    estimator: Any
    metrics: dict[str, float]
    x_test: np.ndarray
    y_test: np.ndarray
    labels: list[str]
    duration_s: float


def fit(ds: Dataset, recipe: Recipe, on_done: Callable[[float, dict[str, float]], None] | None = None) -> Fitted:
    """Fit the recipe's estimator on the training split and evaluate it on the held-out one."""
    make = ESTIMATORS.get(recipe.architecture)
    if make is None:
        raise UnknownArchitecture(f"{recipe.architecture!r} is not a classic estimator; these are {sorted(ESTIMATORS)}")
    if ds.image is not None or ds.x.ndim != 2:
        raise UnknownArchitecture(f"{recipe.architecture!r} trains on rows of features, not pictures")
    try:
        estimator = make(recipe)
    except ImportError as exc:
        raise UnknownArchitecture(f"{recipe.architecture!r} is not installed on this trainer: {INSTALL}") from exc
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    started = time.perf_counter()
    estimator.fit(ds.x[train_idx], ds.y[train_idx])
    duration = time.perf_counter() - started
    x_test, y_test = ds.x[test_idx], ds.y[test_idx]
    proba = np.asarray(estimator.predict_proba(x_test))
    if proba.shape[1] != len(ds.labels):  # a class absent from the training split
        raise DatasetError(
            f"the training split holds {proba.shape[1]} of {len(ds.labels)} classes: add rows of the missing ones"
        )
    metrics = evaluate(proba, y_test, len(ds.labels))
    loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_test)), y_test], 1e-12, None))))
    if on_done is not None:
        on_done(loss, metrics)
    return Fitted(estimator, metrics, x_test, y_test, ds.labels, duration)
