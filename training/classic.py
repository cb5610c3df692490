"""Classic models on a dataset: scikit-learn, XGBoost and LightGBM, fitted and evaluated without torch.

The recipe's `architecture` names one of `ESTIMATORS` (the catalog lists the same names, torch-free);
the held-out split, the seed and the metrics are the torch recipes' own (`data.split`,
`metrics.evaluate`), so a classic version and a torch version of one dataset compare like for like.
A classic fit has no epochs: it reports one progress step when it is done.

On a table (CSV, Parquet) the estimator fits the rows training/tables.py encodes from the dataset's
`schema`, the torch networks' own inputs; a regression's estimator learns the label in its units and is
scored with mse, mae and r2. Trees are a classifier or a regressor as the task says; the linear models
are `sklearn:logistic` (classification) and `sklearn:ridge` (regression).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from fermion.events import Recipe
from fermion.model_store.features import Task

from .data import Dataset, split
from .errors import DatasetError, UnknownArchitecture
from .metrics import confusion, evaluate_regression, evaluation, residuals, scores

INSTALL = "pip install 'fermion[classic]'"


def _hist_gradient_boosting(recipe: Recipe, task: Task) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    kind = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    return kind(max_iter=recipe.epochs * 5, random_state=recipe.seed)


def _logistic(recipe: Recipe, task: Task, *, table: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _only(recipe, task, "classification", "sklearn:ridge")
    model = LogisticRegression(max_iter=1000, random_state=recipe.seed)
    return model if table else make_pipeline(StandardScaler(), model)  # a table's rows come scaled already


def _ridge(recipe: Recipe, task: Task, *, table: bool = False) -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _only(recipe, task, "regression", "sklearn:logistic")
    model = Ridge(random_state=recipe.seed)
    return model if table else make_pipeline(StandardScaler(), model)


def _only(recipe: Recipe, task: Task, wanted: Task, other: str) -> None:
    if task != wanted:
        raise UnknownArchitecture(
            f"{recipe.architecture!r} is for {wanted}; this dataset's task is {task}: use {other!r}"
        )


def _xgboost(recipe: Recipe, task: Task) -> Any:
    from xgboost import XGBClassifier, XGBRegressor

    kind = XGBRegressor if task == "regression" else XGBClassifier
    return kind(n_estimators=recipe.epochs * 5, random_state=recipe.seed, n_jobs=1)


def _lightgbm(recipe: Recipe, task: Task) -> Any:
    from lightgbm import LGBMClassifier, LGBMRegressor

    kind = LGBMRegressor if task == "regression" else LGBMClassifier
    return kind(n_estimators=recipe.epochs * 5, random_state=recipe.seed, n_jobs=1, verbose=-1)


# Trees: `epochs` x 5 boosting rounds (the default 20 epochs: 100 rounds, each library's own default).
# The trees are a classifier or a regressor as the dataset's task says; the linear models are one each.
ESTIMATORS: dict[str, Callable[..., Any]] = {
    "sklearn:hist_gradient_boosting": _hist_gradient_boosting,
    "sklearn:logistic": _logistic,
    "sklearn:ridge": _ridge,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
}
LINEAR = frozenset({"sklearn:logistic", "sklearn:ridge"})
"""Their table form takes the schema's scaled rows as they are (no StandardScaler step of their own)."""


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
    task: Task = "classification"
    evaluation: dict[str, Any] | None = None
    """The held-out evaluation behind `metrics`: a classifier's confusion matrix and per-class scores, a
    regression's residuals (training/metrics.py), as a torch model's."""


def make_estimator(recipe: Recipe, ds: Dataset) -> Any:
    """The recipe's unfitted estimator for the dataset's task; UnknownArchitecture if it cannot be."""
    make = ESTIMATORS.get(recipe.architecture)
    if make is None:
        raise UnknownArchitecture(f"{recipe.architecture!r} is not a classic estimator; these are {sorted(ESTIMATORS)}")
    if ds.image is not None or ds.x.ndim != 2:
        raise UnknownArchitecture(f"{recipe.architecture!r} trains on rows of features, not pictures")
    try:
        if recipe.architecture in LINEAR:
            return make(recipe, ds.task, table=ds.schema is not None)
        return make(recipe, ds.task)
    except ImportError as exc:
        raise UnknownArchitecture(f"{recipe.architecture!r} is not installed on this trainer: {INSTALL}") from exc


def fit(ds: Dataset, recipe: Recipe, on_done: Callable[[float, dict[str, float]], None] | None = None) -> Fitted:
    """Fit the recipe's estimator on the training split and evaluate it on the held-out one."""
    estimator = make_estimator(recipe, ds)
    train_idx, test_idx = split(ds, recipe.test_fraction, recipe.seed)
    started = time.perf_counter()
    estimator.fit(ds.x[train_idx], ds.y[train_idx])
    duration = time.perf_counter() - started
    x_test, y_test = ds.x[test_idx], ds.y[test_idx]
    if ds.task == "regression":
        predicted = np.asarray(estimator.predict(x_test), dtype=np.float64)
        metrics = evaluate_regression(predicted, y_test.astype(np.float64))
        evaluated = residuals(predicted, y_test)
        loss = metrics["mse"]
    else:
        proba = np.asarray(estimator.predict_proba(x_test))
        if proba.shape[1] != len(ds.labels):  # a class absent from the training split
            raise DatasetError(
                f"the training split holds {proba.shape[1]} of {len(ds.labels)} classes: add rows of the missing ones"
            )
        cm = confusion(proba, y_test, len(ds.labels))
        metrics, evaluated = scores(cm), evaluation(cm, ds.labels)
        loss = float(-np.mean(np.log(np.clip(proba[np.arange(len(y_test)), y_test], 1e-12, None))))
    if on_done is not None:
        on_done(loss, metrics)
    return Fitted(estimator, metrics, x_test, y_test, ds.labels, duration, ds.task, evaluated)
