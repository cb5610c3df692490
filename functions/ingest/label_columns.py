"""The label column of a training on a CSV dataset: checked at the door, chosen when not given.

The default, when a request does not name one: `label` if the header has it, else `target`
(scikit-learn's frames), else the last column. A named column the header lacks is a 400 listing
the columns, before anything is queued. NPZ datasets carry their labels as array `y`.
"""

from __future__ import annotations

import csv
import io

from fermion.events import DatasetRef, Recipe
from fermion.model_store import DatasetStore, dataset_key

from .errors import BadRequest

DEFAULT_LABELS = ("label", "target")
HEADER_BYTES = 1 << 16


def csv_header(datasets: DatasetStore, tenant: str, ref: DatasetRef) -> list[str]:
    """The column names of a stored CSV dataset."""
    data, _ = datasets.store.get(dataset_key(tenant, ref.name, ref.sha256, ref.format))
    text = data[:HEADER_BYTES].decode("utf-8", errors="replace")
    return [c.strip() for c in next(csv.reader(io.StringIO(text)), [])]


def default_label(columns: list[str]) -> str:
    """`label`, else `target`, else the last column."""
    return next((c for c in DEFAULT_LABELS if c in columns), columns[-1])


def resolve_labels(datasets: DatasetStore, tenant: str, ref: DatasetRef, recipes: list[Recipe]) -> list[Recipe]:
    """`recipes` with their label column checked (or chosen) against the dataset's header."""
    if ref.format != "csv":
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
