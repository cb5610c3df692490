"""Rows from the files people have (CSV, header or not; Parquet, NPY, NPZ, JSON lines), as `predict` sends them.

A CSV header is recognised by a field that is not a number (and, for a model with named columns, by
naming one of them). Rows with names (a header, Parquet, JSON
objects) go to a table model (its metadata has `features`) or a graph of several inputs by name: the
server matches columns in any order, drops the label column, and refuses missing or unknown ones,
naming them. Rows without names go in order. Any other model takes rows of float features, as it
always has: a header's columns are matched by count, a `label` or `target` column dropped, said so.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from fermion.client import FermionError

from .console import note

LABEL_COLUMNS = ("label", "target")
Rows = list[dict[str, Any]] | list[list[Any]]


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_rows(path: Path, names: set[str] | None = None) -> tuple[Rows, list[str] | None]:
    """The rows in `path`: objects by column name when the file names its columns (and the names), else lists.

    `names`: the model's column names, when it has them: a CSV's first row is its header only if it names one.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(np.float32).tolist(), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "x" not in npz.files:
                    raise FermionError(f"{path.name} has no array 'x' (it has {', '.join(npz.files)})")
                return npz["x"].astype(np.float32).tolist(), None
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _json_lines(path)
        if suffix in (".parquet", ".pq"):
            return _parquet(path)
        return _csv(path, names)
    except (ValueError, OSError, EOFError) as exc:
        raise FermionError(f"cannot read {path.name}: {exc}") from exc


def _csv(path: Path, names: set[str] | None) -> tuple[Rows, list[str] | None]:
    # Cells stay text: a table model's server reads numbers, blanks and yes/no as its columns take them.
    rows = [r for r in csv.reader(path.read_text(encoding="utf-8").splitlines()) if r]
    if not rows:
        raise FermionError(f"{path.name} is empty")
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise FermionError(f"{path.name}: rows have different numbers of fields ({sorted(widths)})")
    if all(_number(v) for v in rows[0]) or (names and not names & {v.strip() for v in rows[0]}):
        return rows, None
    header = [h.strip() for h in rows[0]]
    return [dict(zip(header, r, strict=True)) for r in rows[1:]], header


def _parquet(path: Path) -> tuple[Rows, list[str] | None]:
    try:
        import pyarrow.parquet as pq
    except ModuleNotFoundError as exc:
        raise FermionError(f"reading Parquet needs pyarrow: pip install 'fermion[tables]' ({exc.name})") from None
    table = pq.read_table(path)
    return table.to_pylist(), table.column_names


def _json_lines(path: Path) -> tuple[Rows, list[str] | None]:
    items: list[Any] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if items and all(isinstance(i, dict) for i in items):
        return items, list(items[0])
    if any(isinstance(i, dict) for i in items):
        raise FermionError(f"{path.name}: lines must be all objects or all lists")
    return items, None


def known_names(meta: dict[str, Any]) -> set[str]:
    """The names a row of this model's may carry: its columns, label and dropped columns, or its inputs."""
    features = (meta.get("parameters") or {}).get("features") or {}
    names = {c["name"] for c in features.get("columns") or []} | set(features.get("dropped") or {})
    names |= {features["label"]} if features.get("label") else set()
    return names | {i["name"] for i in meta.get("inputs") or []}


def ignored(features: dict[str, Any], header: list[str], source: str) -> None:
    """Say which of `source`'s columns the server will ignore: the label, and the columns the model does not use."""
    if features.get("label") in header:
        note(f"ignoring column {features['label']!r} of {source} (the model's label)")
    unused = [f"{name!r} ({why})" for name, why in (features.get("dropped") or {}).items() if name in header]
    if unused:
        note(f"ignoring column(s) {', '.join(unused)} of {source}: the model does not use them")


def by_name(meta: dict[str, Any], rows: Rows) -> bool:
    """Whether `:predict` matches these rows by name: a table model, a graph of several inputs, or input names."""
    parameters = meta.get("parameters") or {}
    if parameters.get("features") or len(meta.get("inputs") or []) > 1:
        return True
    inputs = {i["name"] for i in meta.get("inputs") or []}
    return bool(rows) and all(isinstance(r, dict) and set(r) <= inputs for r in rows)


def float_rows(rows: Rows, header: list[str] | None, source: str) -> np.ndarray:
    """Rows of float features (a model without named columns); FermionError naming a cell that is not a number."""
    first = 2 if header else 1  # the line a row is on (after the header)
    matrix = []
    for n, row in enumerate(rows, start=first):
        values: list[Any] = [row.get(h) for h in header or []] if isinstance(row, dict) else list(row)
        try:
            matrix.append([float(v) for v in values])
        except (TypeError, ValueError):
            bad = next(v for v in values if not _number(str(v)))
            raise FermionError(f"{source} line {n}: {bad!r} is not a number") from None
    return np.asarray(matrix, dtype=np.float32).reshape(len(matrix), -1)


def fit_columns(x: np.ndarray, header: list[str] | None, meta: dict[str, Any], source: str) -> np.ndarray:
    """`x` with as many columns as the model takes; FermionError naming any mismatch."""
    shape = meta["inputs"][0]["shape"]
    want = shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) and shape[-1] > 0 else None
    if want is None or x.shape[1] == want:
        return x
    if header and x.shape[1] == want + 1:
        extra = [c for c in LABEL_COLUMNS if c in header]
        if extra:
            note(f"ignoring column {extra[0]!r} of {source} (a label, not a feature)")
            return np.delete(x, header.index(extra[0]), axis=1)
    raise FermionError(f"{source} has {x.shape[1]} columns; the model takes {want} features per row")
