"""The label column of a training on a CSV dataset: checked at the door, chosen when not given.

The default, when a request does not name one: the first of label, target, class, y, outcome
(any case) the header has, else the last column (model_store/tables.py `guess_label`, the rule the
upload profile and the trainer share). A named column the header lacks is a 400 listing
the columns, before anything is queued. NPZ datasets carry their labels as array `y`.
"""

from __future__ import annotations

import csv
import io

import pyarrow.parquet as pq

from fermion.events import DatasetRef, Recipe
from fermion.model_store import DatasetStore, dataset_key
from fermion.model_store.tables import guess_label

from .errors import BadRequest

HEADER_BYTES = 1 << 16


def csv_header(datasets: DatasetStore, tenant: str, ref: DatasetRef) -> list[str]:
    """The column names of a stored CSV dataset."""
    data, _ = datasets.store.get(dataset_key(tenant, ref.name, ref.sha256, ref.format))
    if ref.format == "parquet":
        return list(pq.read_schema(io.BytesIO(data)).names)
    text = data[:HEADER_BYTES].decode("utf-8", errors="replace")
    return [c.strip() for c in next(csv.reader(io.StringIO(text)), [])]


def default_label(columns: list[str]) -> str:
    """The first of label, target, class, y, outcome (any case) in `columns`, else the last column."""
    return guess_label(columns)


def resolve_labels(datasets: DatasetStore, tenant: str, ref: DatasetRef, recipes: list[Recipe]) -> list[Recipe]:
    """`recipes` with their label column checked (or chosen) against the dataset's header."""
    if ref.format not in ("csv", "parquet"):
        return recipes
    columns = csv_header(datasets, tenant, ref)
    out = []
    for recipe in recipes:
        if "label_column" not in recipe.model_fields_set:
            recipe = recipe.model_copy(update={"label_column": default_label(columns)})
        elif recipe.label_column not in columns:
            raise BadRequest(
                f"dataset {ref.name!r} has no label column {recipe.label_column!r}; its columns are "
                f"{', '.join(columns)}"
            )
        out.append(recipe)
    return out
