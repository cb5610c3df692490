"""What `fermion predict` prints and writes for rows: one prediction per row, with its class probabilities."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from fermion.client import FermionError

OUT_SUFFIXES = (".csv", ".parquet")


def per_row(answer: dict[str, Any]) -> list[dict[str, Any]]:
    """`:predict`'s answer as {"prediction", "probabilities": {class: p}} per row (a regression: no probabilities)."""
    probabilities = answer.get("probabilities")
    if probabilities is None:
        return [{"prediction": p} for p in answer["predictions"]]
    classes = [str(c) for c in answer.get("classes") or range(len(probabilities[0]) if probabilities else 0)]
    return [
        {"prediction": p, "probabilities": dict(zip(classes, row, strict=True))}
        for p, row in zip(answer["predictions"], probabilities, strict=True)
    ]


def table_row(item: tuple[int, dict[str, Any]]) -> list[Any]:
    """row, prediction, and the probability of the predicted class (blank for a regression)."""
    n, row = item
    probabilities = row.get("probabilities")
    best = probabilities.get(str(row["prediction"])) if probabilities else None
    return [n, row["prediction"], "" if best is None else f"{best:.4f}"]


def check_out(path: Path) -> None:
    """Refuse an output file `write` cannot make, before any row is sent."""
    if path.suffix.lower() not in OUT_SUFFIXES:
        raise FermionError(f"--out must end in {' or '.join(OUT_SUFFIXES)}; got {path.name}")


def write(path: Path, rows: list[dict[str, Any]]) -> None:
    """The predictions as CSV or Parquet: `prediction`, then `probability_CLASS` per class (a classifier)."""
    flat = []
    for row in rows:
        prediction = row["prediction"]
        cells = {"prediction": json.dumps(prediction) if isinstance(prediction, list) else prediction}
        cells.update({f"probability_{c}": p for c, p in (row.get("probabilities") or {}).items()})
        flat.append(cells)
    if path.suffix.lower() == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ModuleNotFoundError as exc:
            raise FermionError(f"writing Parquet needs pyarrow: pip install 'fermion[tables]' ({exc.name})") from None
        pq.write_table(pa.Table.from_pylist(flat), path)
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(flat[0]) if flat else ["prediction"])
        writer.writeheader()
        writer.writerows(flat)
