"""Rows of features from the files people have: CSV with or without a header, NPY, NPZ, JSON lines.

A header is recognised by a field that is not a number. Columns are matched by name against the
model's feature names when its metadata has them; otherwise the column count must equal the
model's feature count, except that a header's `label` or `target` column (the training CSV itself)
is dropped, and said so.
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


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_rows(path: Path) -> tuple[np.ndarray, list[str] | None]:
    """The rows in `path` as float32, and the column names if the file has them."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, allow_pickle=False).astype(np.float32), None
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as npz:
                if "x" not in npz.files:
                    raise FermionError(f"{path.name} has no array 'x' (it has {', '.join(npz.files)})")
                return npz["x"].astype(np.float32), None
        if suffix in (".jsonl", ".ndjson", ".json"):
            return _json_lines(path)
        return _csv(path)
    except (ValueError, OSError, EOFError) as exc:
        raise FermionError(f"cannot read {path.name}: {exc}") from exc


def _csv(path: Path) -> tuple[np.ndarray, list[str] | None]:
    rows = [r for r in csv.reader(path.read_text(encoding="utf-8").splitlines()) if r]
    if not rows:
        raise FermionError(f"{path.name} is empty")
    header = None
    if not all(_number(v) for v in rows[0]):
        header, rows = [h.strip() for h in rows[0]], rows[1:]
    widths = {len(r) for r in rows}
    if len(widths) > 1:
        raise FermionError(f"{path.name}: rows have different numbers of fields ({sorted(widths)})")
    for n, r in enumerate(rows, start=2 if header else 1):
        bad = [v for v in r if not _number(v)]
        if bad:
            raise FermionError(f"{path.name} line {n}: {bad[0]!r} is not a number")
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), -1), header


def _json_lines(path: Path) -> tuple[np.ndarray, list[str] | None]:
    items: list[Any] = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if items and all(isinstance(i, dict) for i in items):
        header = list(items[0])
        return np.asarray([[float(i[k]) for k in header] for i in items], dtype=np.float32), header
    return np.asarray(items, dtype=np.float32).reshape(len(items), -1), None


def fit_columns(x: np.ndarray, header: list[str] | None, meta: dict[str, Any], source: str) -> np.ndarray:
    """`x` with the columns the model takes, in its order; FermionError naming any mismatch."""
    shape = meta["inputs"][0]["shape"]
    features = (meta.get("parameters") or {}).get("features") or []
    if header and features:
        missing = [f for f in features if f not in header]
        if missing:
            raise FermionError(f"{source} lacks the model's feature column(s) {', '.join(missing)}")
        return x[:, [header.index(f) for f in features]]
    want = shape[-1] if len(shape) == 2 and isinstance(shape[-1], int) and shape[-1] > 0 else None
    if want is None or x.shape[1] == want:
        return x
    if header and x.shape[1] == want + 1:
        extra = [c for c in LABEL_COLUMNS if c in header]
        if extra:
            note(f"ignoring column {extra[0]!r} of {source} (a label, not a feature)")
            return np.delete(x, header.index(extra[0]), axis=1)
    raise FermionError(f"{source} has {x.shape[1]} columns; the model takes {want} features per row")
