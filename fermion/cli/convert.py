"""A user's classic model made a pushable graph: convert it and prove it answers as the original does.

Used by `fermion models push --sklearn` (a `.skops` file) and `fermion models import` (an MLflow
model). The parity rows are the user's (`--sample rows.csv`) or generated ones; either way the
graph is refused before anything is uploaded when its probabilities are off by more than `atol`.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fermion.client import FermionError

from .rows import float_rows, read_rows

GENERATED_ROWS = 1000


@dataclass(frozen=True)
class Converted:
    """The graph written to `path`, the class names in output order, and the parity figures."""

    path: Path
    labels: list[str]
    parity: dict[str, float]
    rows: str
    """Which rows the parity ran on, in words."""


def parity_rows(estimator: Any, sample: Path | None, seed: int = 0) -> tuple[np.ndarray, str]:
    """The user's sample rows, or standard-normal rows as wide as the estimator's input."""
    if sample is not None:
        rows, header = read_rows(sample)
        x = float_rows(rows, header, sample.name)
        return x, f"{len(x)} rows of {sample.name}"
    width = getattr(estimator, "n_features_in_", None)
    if width is None:
        raise FermionError("the model does not say how many features it takes (n_features_in_): give --sample rows.csv")
    x = np.random.default_rng(seed).standard_normal((GENERATED_ROWS, int(width))).astype(np.float32)
    return x, f"{GENERATED_ROWS} generated rows (standard normal; --sample gives rows like yours)"


def convert(estimator: Any, sample: Path | None, workdir: Path, *, atol: float = 1e-5) -> Converted:
    """The estimator as `workdir/model.onnx`, after parity on the sample (or generated) rows."""
    from fermion.compile import CompileError
    from fermion.compile.classic import check_parity, classes_of, to_onnx

    x, said = parity_rows(estimator, sample)
    width = getattr(estimator, "n_features_in_", x.shape[1])
    if x.ndim != 2 or x.shape[1] != width:
        raise FermionError(f"the sample rows have {x.shape[1]} columns; the model takes {width}")
    try:
        graph = to_onnx(estimator, int(width))
        report = check_parity(estimator, graph, x, atol=atol)
    except CompileError as exc:
        raise FermionError(str(exc)) from exc
    path = workdir / "model.onnx"
    path.write_bytes(graph)
    return Converted(path, classes_of(estimator), report.as_dict(), said)


def push_converted(
    client: Any, name: str, estimator: Any, sample: Path | None, origin: dict[str, Any], **kw: Any
) -> Any:
    """Convert, check and push one estimator; returns the push's answer and the conversion."""
    with tempfile.TemporaryDirectory(prefix="fermion-convert-") as tmp:
        done = convert(estimator, sample, Path(tmp))
        out = client.push(
            name,
            done.path,
            labels=done.labels,
            metrics=kw.get("metrics"),
            origin={**origin, "parity": done.parity, "parity_rows": done.rows},
        )
    return out, done
