"""Rows of float features from a CSV file, with or without a header line."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np


class BadInput(Exception):
    """The input file is not rows of numbers the model takes; the message says where."""


def _numbers(row: list[str]) -> list[float] | None:
    try:
        return [float(v) for v in row]
    except ValueError:
        return None


def read_rows(path: Path, n_features: int) -> np.ndarray:
    """float32 rows of `n_features` columns; a first line that is not all numbers is a header."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            lines = [r for r in csv.reader(f) if r and any(v.strip() for v in r)]
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {path}: {exc}") from exc
    if lines and _numbers(lines[0]) is None:
        lines = lines[1:]  # a header
    rows = []
    for n, line in enumerate(lines, start=1):
        values = _numbers(line)
        if values is None:
            raise BadInput(f"{path.name}: data row {n} has a field that is not a number")
        if len(values) != n_features:
            raise BadInput(f"{path.name}: data row {n} has {len(values)} values; the model takes {n_features}")
        rows.append(values)
    if not rows:
        raise BadInput(f"{path.name} holds no data rows")
    x = np.asarray(rows, dtype=np.float32)
    if not np.all(np.isfinite(x)):
        raise BadInput(f"{path.name} holds NaN or infinite values")
    return x
