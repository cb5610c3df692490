"""Tables (CSV, Parquet) read with pyarrow: typed columns, the label and task, a fitted FeatureSchema, float rows.

Torch-free. The rules are the shared ones (model_store/features.py and the upload profile agree on them):
a column is a number, integer, boolean, category or text; text, constant and id columns are dropped with
the reason (`FeatureSchema.dropped`); the label is the recipe's column, else the first of label, target,
class, y, outcome, else the last column. Statistics (medians, scaling, vocabularies, the target's) are
fitted on the training rows only, so the held-out split judges the whole pipeline.

`encode` turns raw columns into the float32 rows the network trains on, exactly as the exported graph
does it (compile/preprocessing.py): the parity check runs both on the same raw rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from fermion.model_store.features import (
    LOGITS,
    PREDICTION,
    PROBABILITIES,
    Column,
    FeatureSchema,
    Target,
    Task,
)

from .errors import DatasetError
from .splits import split_rows
from .tablescan import Source, columns, groups, rows_of, scan

MAX_ROWS = 5_000_000
MAX_CATEGORIES = 100
MAX_CLASSES_OF_INTEGERS = 20
SAMPLE_ROWS = 20_000
"""Raw rows kept beside the encoded matrix: the parity check's and the drift profile's."""
LABEL_NAMES = ("label", "target", "class", "y", "outcome")
TRUE_WORDS = ("1", "t", "true", "y", "yes")
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "y", "n", "t", "f"})
RESERVED = frozenset({LOGITS, PROBABILITIES, PREDICTION})


def choose_label(names: list[str], wanted: str | None) -> str:
    """The recipe's label column if the table has it, else the first of LABEL_NAMES (any case), else the last."""
    if wanted and wanted in names:
        return wanted
    lower = {n.lower(): n for n in reversed(names)}
    return next((lower[c] for c in LABEL_NAMES if c in lower), names[-1])


def column_kind(name: str, array: pa.ChunkedArray) -> tuple[str | None, str]:
    """A column's kind, or None and why it cannot be used."""
    t = array.type
    valid = len(array) - array.null_count
    if valid == 0:
        return None, "empty: every value is blank"
    if pa.types.is_integer(t) and (name.lower() == "id" or name.lower().endswith("_id")):
        return None, "id"
    distinct = pc.count_distinct(array).as_py()
    if distinct == 1:
        return None, "constant"
    if pa.types.is_boolean(t):
        return "boolean", ""
    if pa.types.is_integer(t):
        return "integer", ""
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "number", ""
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        words = pc.unique(pc.utf8_lower(pc.utf8_trim_whitespace(array.drop_null()))).to_pylist()
        if set(words) <= BOOLEAN_WORDS:
            return "boolean", ""
        if distinct <= MAX_CATEGORIES and distinct <= valid / 2:
            return "category", ""
        return None, f"text or id-like: {distinct:,} distinct values in {valid:,} rows"
    return None, f"unsupported type {t}"


def decide_task(array: pa.ChunkedArray, wanted: Task | None) -> Task:
    """Classification for a boolean or text label or one of few integers; regression otherwise (or as asked)."""
    t = array.type
    numeric = pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
    if wanted == "regression" and not numeric:
        raise DatasetError(f"the label is of type {t}; a regression needs a numeric label")
    if wanted is not None:
        return wanted
    if not numeric:
        return "classification"
    if pa.types.is_integer(t) and pc.count_distinct(array).as_py() <= MAX_CLASSES_OF_INTEGERS:
        return "classification"
    return "regression"


def _normalise(array: pa.ChunkedArray) -> pa.ChunkedArray:
    """Parquet's dictionaries as strings, decimals as float64: the kinds above see plain types."""
    if pa.types.is_dictionary(array.type):
        array = array.cast(array.type.value_type)
    if pa.types.is_decimal(array.type):
        array = pc.cast(array, pa.float64())
    if pa.types.is_large_string(array.type):
        array = array.cast(pa.string())
    return array


def class_names(array: pa.ChunkedArray) -> tuple[list[str], np.ndarray]:
    """The classes (numbers in numeric order, other values as text, sorted) and each row's class index."""
    if pa.types.is_boolean(array.type):
        values = np.asarray(array.to_numpy(zero_copy_only=False)).astype(bool)
        classes, index = np.unique(values, return_inverse=True)
        return [str(c).lower() for c in classes], index.astype(np.int64)
    numeric = pa.types.is_integer(array.type) or array.type == pa.float64()  # float32 prints its own way
    if numeric or pa.types.is_string(array.type):
        # Arrow's hash lookup: int32 positions, not np.unique's sorted copies of the whole column.
        found = sorted(pc.unique(array).to_pylist())
        names = [str(int(c)) if numeric and float(c).is_integer() else str(c) for c in found]
        index = pc.index_in(array, value_set=pa.array(found, array.type)).to_numpy(zero_copy_only=False)
        return names, index.astype(np.int64)
    values = np.asarray(array.to_numpy(zero_copy_only=False))
    classes, index = np.unique(values.astype(str), return_inverse=True)
    return [str(c) for c in classes], index.astype(np.int64)


def numbers(array: pa.ChunkedArray, kind: str) -> np.ndarray:
    """A number, integer or boolean column as float32 with NaN for blanks (booleans as 0/1)."""
    if kind == "boolean" and not pa.types.is_boolean(array.type):
        array = pc.is_in(pc.utf8_lower(pc.utf8_trim_whitespace(array)), value_set=pa.array(TRUE_WORDS))
    if pa.types.is_boolean(array.type):
        array = pc.cast(array, pa.uint8())
    wide = pc.cast(array, pa.float64(), safe=False).to_numpy(zero_copy_only=False)
    return np.asarray(wide, dtype=np.float32)


def category_index(column: Column, array: pa.ChunkedArray) -> np.ndarray:
    """Each row's position in the vocabulary: blanks as the imputed value's, values outside it -1."""
    found = pc.index_in(array, value_set=pa.array(column.categories, pa.string()))
    index = np.asarray(pc.fill_null(found, -1).to_numpy(zero_copy_only=False), dtype=np.int64)
    blank = np.asarray(array.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    blank |= np.asarray(pc.equal(array, "").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    index[blank] = column.categories.index(str(column.impute))
    return index


def width(column: Column) -> int:
    """How many network inputs a column becomes (a category: one per vocabulary entry)."""
    return len(column.categories) if column.kind == "category" else 1


def fit_column(name: str, kind: str, array: pa.ChunkedArray, rows: np.ndarray) -> Column | str:
    """A column's preparation fitted on the training `rows`, or why it cannot be used."""
    train = array.take(pa.array(rows))
    if kind == "category":
        counts = pc.value_counts(train.drop_null()).to_pylist()
        counts = [c for c in counts if c["values"] != ""]
        if not counts:
            return "empty on the training rows"
        vocabulary = sorted(c["values"] for c in counts)
        mode = min(counts, key=lambda c: (-c["counts"], c["values"]))["values"]
        return Column(name=name, kind="category", datatype="BYTES", impute=mode, categories=vocabulary)
    values = numbers(train, kind)
    seen = values[~np.isnan(values)]
    if not len(seen):
        return "empty on the training rows"
    if kind == "boolean":
        mode = float(np.float32(np.mean(seen) > 0.5))
        return Column(name=name, kind="boolean", datatype="FP32", impute=mode, true_values=list(TRUE_WORDS))
    median = np.float32(np.median(seen))
    filled = np.where(np.isnan(values), median, values).astype(np.float64)
    std = float(np.float32(filled.std())) or 1.0
    return Column(
        name=name,
        kind=kind,  # type: ignore[arg-type]  # number or integer here
        datatype="FP32",
        impute=float(median),
        mean=float(np.float32(filled.mean())),
        std=std,
    )


def encode(schema: FeatureSchema, table: pa.Table | dict[str, pa.ChunkedArray], *, consume: bool = False) -> np.ndarray:
    """Raw columns → the float32 rows the network takes, as the graph computes them (float32 steps).

    With `consume`, `table` is a dict of columns, each taken out of it as it is encoded (its memory freed).
    """
    columns = table if isinstance(table, dict) else {n: table.column(n) for n in schema.names()}
    n = len(next(iter(columns.values())))
    x = np.empty((n, sum(width(c) for c in schema.columns)), dtype=np.float32)
    at = 0
    for column in schema.columns:
        array = _normalise(columns.pop(column.name) if consume else columns[column.name])
        if column.kind == "category":
            index = category_index(column, array)
            k = len(column.categories)
            x[:, at : at + k] = index[:, None] == np.arange(k)[None, :]
            at += k
            continue
        v = numbers(array, column.kind)
        np.copyto(v, np.float32(column.impute), where=np.isnan(v))
        if column.mean is not None and column.std is not None:
            np.subtract(v, np.float32(column.mean), out=v)
            np.divide(v, np.float32(column.std), out=v)
        x[:, at] = v
        at += 1
    return x


def graph_inputs(schema: FeatureSchema, table: pa.Table) -> dict[str, np.ndarray]:
    """Raw columns as the exported graph's inputs: [n, 1] float32 (NaN blanks) or strings ("" blanks)."""
    feeds: dict[str, np.ndarray] = {}
    for column in schema.columns:
        array = _normalise(table.column(column.name))
        if column.kind == "category":
            values = pc.fill_null(pc.cast(array, pa.string()), "").to_pylist()
            feeds[column.name] = np.asarray(values, dtype=object).reshape(-1, 1)
        else:
            feeds[column.name] = numbers(array, column.kind).reshape(-1, 1)
    return feeds


def fit_named(name: str, array: pa.ChunkedArray, rows: np.ndarray) -> Column | str:
    """Column `name` (not the label) fitted on the training `rows`, or why it cannot be used."""
    if name in RESERVED:
        return f"its name is one of the graph's outputs ({', '.join(sorted(RESERVED))})"
    array = _normalise(array)
    kind, reason = column_kind(name, array)
    return fit_column(name, kind, array, rows) if kind is not None else reason


def schema_of(
    fitted: list[Column | tuple[str, str]], label: str, task: Task, labels: list[str], target: Target | None
) -> FeatureSchema:
    """The FeatureSchema of the fitted columns (a dropped one as its name and why); DatasetError if none is usable."""
    columns = [c for c in fitted if isinstance(c, Column)]
    dropped = dict(c for c in fitted if not isinstance(c, Column))
    if not columns:
        why = "; ".join(f"{k!r}: {v}" for k, v in dropped.items()) or "it has only the label"
        raise DatasetError(f"no column of the table can be used as a feature (label {label!r}; {why})")
    return FeatureSchema(columns=columns, label=label, task=task, classes=labels, target=target, dropped=dropped)


def fit_schema(
    table: pa.Table, label: str, task: Task, rows: np.ndarray, labels: list[str], target: Target | None
) -> FeatureSchema:
    """The FeatureSchema of `table`'s usable columns, fitted on the training `rows`."""
    fitted = [_named(n, fit_named(n, table.column(n), rows)) for n in table.column_names if n != label]
    return schema_of(fitted, label, task, labels, target)


def _named(name: str, fitted: Column | str) -> Column | tuple[str, str]:
    return fitted if isinstance(fitted, Column) else (name, fitted)


@dataclass(frozen=True)
class Table:
    """A table ready to train on: encoded rows, labels (class indices or target values), schema, raw sample."""

    x: np.ndarray
    y: np.ndarray
    schema: FeatureSchema
    sample: pa.Table
    """Up to SAMPLE_ROWS raw rows of the used columns (blanks kept): parity and the drift profile."""


def load_table(
    path: Path, fmt: str, label_column: str | None, task: Task | None, test_fraction: float, seed: int
) -> Table:
    """Read, type, fit on the training split and encode a table; DatasetError naming what makes it unusable.

    The file is streamed (training/tablescan.py), never held whole: the label first, then the feature
    columns in groups to fit them, then every used column in batches into the preallocated matrix.
    """
    source, label, array = scan(path, fmt, lambda names: choose_label(names, label_column))
    if source.rows > MAX_ROWS:
        raise DatasetError(f"{fmt} dataset has {source.rows} rows; the limit is {MAX_ROWS}")
    if len(source.names) < 2:
        raise DatasetError(f"{fmt} dataset has {len(source.names)} column(s); it needs features and a label")
    try:
        return _prepared(source, label, array, task, test_fraction, seed)
    except DatasetError as exc:
        if label_column and label != label_column:  # say which column stood in for the one asked for
            raise DatasetError(f"{exc} (label column {label!r}: the table has no {label_column!r})") from None
        raise


def _prepared(
    source: Source, label: str, array: pa.ChunkedArray, task: Task | None, test_fraction: float, seed: int
) -> Table:
    array, keep = _normalise(array), None
    if array.null_count:  # a row without its label teaches nothing
        valid = pc.is_valid(array)
        keep = np.asarray(valid.to_numpy(zero_copy_only=False), dtype=bool)
        array = _normalise(array.filter(valid))
    if len(array) < 10:
        raise DatasetError(f"dataset has {len(array)} labelled rows; at least 10 are needed to train and evaluate")
    chosen = decide_task(array, task)
    target = None
    if chosen == "classification":
        labels, y = class_names(array)
        if len(labels) < 2:
            raise DatasetError(f"label column {label!r} has a single class; a classifier needs at least two")
        train_rows, _ = split_rows(y, len(labels), test_fraction, seed)
    else:
        labels, y = [], numbers(array, "number")
        train_rows, _ = split_rows(None, 0, test_fraction, seed, rows=len(y))
        seen = y[train_rows].astype(np.float64)
        target = Target(
            mean=float(seen.mean()), std=float(seen.std()) or 1.0, min=float(seen.min()), max=float(seen.max())
        )
    del array
    fitted: list[Column | tuple[str, str]] = []
    features = [n for n in source.names if n != label]
    for group in groups([n for n in features if n not in RESERVED], len(y)):  # a group's columns at a time
        held = columns(source, group, keep)
        fitted += [_named(n, fit_named(n, held.pop(n), train_rows)) for n in group]
        del held
    order = {n: i for i, n in enumerate(features)}
    reserved = [_named(n, fit_named(n, pa.chunked_array([], pa.null()), train_rows)) for n in features if n in RESERVED]
    fitted = sorted(fitted + reserved, key=lambda c: order[c.name if isinstance(c, Column) else c[0]])
    schema = schema_of(fitted, label, chosen, labels, target)
    x, sample = _encoded(source, schema, keep, len(y), seed)
    return Table(x, y, schema, sample)


def _encoded(
    source: Source, schema: FeatureSchema, keep: np.ndarray | None, n: int, seed: int
) -> tuple[np.ndarray, pa.Table]:
    """The used columns encoded batch by batch into one float32 matrix, and the raw sample rows."""
    picked = np.sort(np.random.default_rng(seed).choice(n, min(n, SAMPLE_ROWS), replace=False))
    x = np.empty((n, sum(width(c) for c in schema.columns)), dtype=np.float32)
    names, parts = schema.names(), []
    done = 0
    for at, batch in rows_of(source, names, keep):
        done = at + batch.num_rows
        if done > n:  # the passes must see the same file
            raise DatasetError(f"{source.fmt} dataset changed while it was read")
        x[at:done] = encode(schema, {name: batch.column(name) for name in names})
        here = picked[(picked >= at) & (picked < at + batch.num_rows)] - at
        if len(here):
            parts.append(pa.Table.from_batches([batch.select(names).take(pa.array(here))]))
    pa.default_memory_pool().release_unused()
    if done != n:
        raise DatasetError(f"{source.fmt} dataset changed while it was read")
    return x, pa.concat_tables(parts).combine_chunks()
