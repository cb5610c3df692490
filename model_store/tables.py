"""Tables (CSV and Parquet) read with pyarrow in batches, and their profile: what a model can use.

The typing follows the table contract the trainer and the server share (model_store/features.py):
pyarrow bool → boolean; strings whose stripped, lower-cased values are all true/false words →
boolean; integer types → integer; floating types → number; other strings → category when they have
at most 100 distinct values and at most half as many as non-null rows, else text (not used). A
column with one distinct value (constant), an integer column named `id` or `*_id`, and text are
dropped, each with its reason. Blanks are nulls.

Torch-free: the ingest profiles uploads with it, the trainer's scoring reads tables with it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
from pydantic import BaseModel, ConfigDict

from .features import ColumnKind, Target, Task

TableFormat = Literal["csv", "parquet"]
TABLE_FORMATS: tuple[TableFormat, ...] = ("csv", "parquet")
BOOLEAN_WORDS = frozenset({"true", "false", "yes", "no", "y", "n", "t", "f"})
LABEL_NAMES = ("label", "target", "class", "y", "outcome")
MAX_CATEGORIES = 100
MAX_CLASSES_OF_INTEGERS = 20
# Distinct values are counted exactly up to these caps (enough for every rule above), then "more than".
STRING_CAP = 100_000
NUMBER_CAP = 1_000
BLOCK_BYTES = 8 << 20


class TableError(ValueError):
    """The file is not a table pyarrow can read."""


def _csv_options() -> tuple[pcsv.ReadOptions, pcsv.ConvertOptions]:
    return pcsv.ReadOptions(block_size=BLOCK_BYTES), pcsv.ConvertOptions(strings_can_be_null=True)


def _open(source: Path | bytes) -> BinaryIO:
    return io.BytesIO(source) if isinstance(source, bytes) else source.open("rb")


class Retyped(TableError):
    """A later CSV block disagreed with the types of the first: read it again with `whole=True`."""


def read_batches(source: Path | bytes, fmt: TableFormat, *, whole: bool = False) -> Iterator[pa.RecordBatch]:
    """The table's record batches, streamed; a CSV is typed from its first 8 MiB unless `whole`.

    Raises Retyped when a later block disagrees with those types (the caller starts again, `whole`:
    the table read at once, its types unified as the trainer reads them).
    """
    read, convert = _csv_options()
    try:
        with _open(source) as f:
            if fmt == "parquet":
                yield from pq.ParquetFile(f).iter_batches(batch_size=1 << 16)
            elif whole:
                yield from pcsv.read_csv(f, read_options=read, convert_options=convert).to_batches()
            else:
                reader = pcsv.open_csv(f, read_options=read, convert_options=convert)
                while True:
                    try:
                        batch = reader.read_next_batch()
                    except StopIteration:
                        return
                    except pa.ArrowInvalid as exc:
                        if "CSV conversion error" in str(exc) or "In CSV column" in str(exc):
                            raise Retyped(str(exc)) from exc
                        raise
                    yield batch
    except (pa.ArrowException, OSError) as exc:
        raise TableError(f"not a readable {fmt}: {exc}") from exc


class ColumnProfile(BaseModel):
    """One column of an uploaded table."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: ColumnKind
    arrow_type: str
    missing: int
    distinct: int
    distinct_more: bool = False
    """True when there are more than `distinct` distinct values (counting stopped there)."""
    used: bool = True
    reason: str | None = None
    """Why a model will not use it (text or id-like, constant, an id); None when used or the label."""


class LabelProfile(BaseModel):
    """The label column a training would use, its task, and its balance or spread."""

    model_config = ConfigDict(frozen=True)

    column: str
    task: Task
    missing: int
    classes: dict[str, int] = {}
    """Classification: rows per class, most frequent first."""
    target: Target | None = None
    """Regression: the label's statistics."""


class DatasetProfile(BaseModel):
    """What an uploaded table holds, and what a model trained on it would use."""

    model_config = ConfigDict(frozen=True)

    format: TableFormat
    rows: int
    columns: list[ColumnProfile]
    label: LabelProfile | None
    used: list[str]
    """The feature columns a model takes, in table order."""
    dropped: dict[str, str]
    """The columns it does not take, each with why."""
    problem: str | None = None
    """Why no model can train on it (refused at upload); None when it can."""


def guess_label(columns: list[str], label_column: str | None = None) -> str:
    """The recipe's label column when the table has it; else label, target, class, y or outcome; else the last."""
    if label_column and label_column in columns:
        return label_column
    lower = {c.lower(): c for c in reversed(columns)}
    return next((lower[n] for n in LABEL_NAMES if n in lower), columns[-1])


@dataclass
class _Tally:
    """A column's running counts over the batches."""

    type: pa.DataType
    keep_counts: bool = False
    rows: int = 0
    missing: int = 0
    values: dict[object, int] = field(default_factory=dict)
    capped: bool = False
    total: float = 0.0
    squares: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, array: pa.Array) -> None:
        self.rows += len(array)
        self.missing += array.null_count
        if pa.types.is_floating(array.type):
            self.missing += int(pc.sum(pc.is_nan(array)).as_py() or 0)  # NaN is a blank too
            array = pc.drop_null(pc.if_else(pc.is_nan(array), None, array))
        else:
            array = pc.drop_null(array)
        if (pa.types.is_integer(array.type) or pa.types.is_floating(array.type)) and len(array):
            as_float = pc.cast(array, pa.float64())
            self.total += pc.sum(as_float).as_py()
            self.squares += pc.sum(pc.multiply(as_float, as_float)).as_py()
            lo, hi = pc.min_max(as_float).values()
            self.low, self.high = min(self.low, lo.as_py()), max(self.high, hi.as_py())
        self._count(array)

    def _count(self, array: pa.Array) -> None:
        if self.capped or not len(array):
            return
        cap = STRING_CAP if pa.types.is_string(array.type) or pa.types.is_large_string(array.type) else NUMBER_CAP
        if self.keep_counts:
            counts = pc.value_counts(array)
            for value, n in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True):
                self.values[value] = self.values.get(value, 0) + n
        else:
            for value in pc.unique(array).to_pylist():
                self.values.setdefault(value, 0)
        if len(self.values) > cap:
            self.capped, self.keep_counts = True, False
            self.values = dict.fromkeys(list(self.values)[:cap], 0)

    @property
    def present(self) -> int:
        return self.rows - self.missing

    def kind(self) -> ColumnKind:
        t = self.type
        if pa.types.is_boolean(t):
            return "boolean"
        if pa.types.is_integer(t):
            return "integer"
        if pa.types.is_floating(t) or pa.types.is_decimal(t):
            return "number"
        if not self.capped and self.values and all(str(v).strip().lower() in BOOLEAN_WORDS for v in self.values):
            return "boolean"
        if not self.capped and len(self.values) <= MAX_CATEGORIES and len(self.values) <= self.present / 2:
            return "category"
        return "text"


def _unused(name: str, tally: _Tally, kind: ColumnKind) -> str | None:
    distinct = f"{'more than ' if tally.capped else ''}{len(tally.values):,}"
    if tally.present == 0:
        return "empty: every value is blank"
    if kind == "text":
        return f"text or id-like: {distinct} distinct values in {tally.present:,} rows"
    if len(tally.values) == 1:
        return "constant: one distinct value"
    if kind == "integer" and (name.lower() == "id" or name.lower().endswith("_id")):
        return "id"
    return None


def _label(name: str, tally: _Tally, kind: ColumnKind, task: Task | None) -> LabelProfile:
    if task is None:
        numeric = kind in ("number", "integer")
        few = not tally.capped and len(tally.values) <= MAX_CLASSES_OF_INTEGERS
        task = "regression" if numeric and not (kind == "integer" and few) else "classification"
    if task == "regression" and tally.present and kind in ("number", "integer"):
        mean = tally.total / tally.present
        std = math.sqrt(max(tally.squares / tally.present - mean * mean, 0.0))
        target = Target(mean=mean, std=std, min=tally.low, max=tally.high)
        return LabelProfile(column=name, task=task, missing=tally.missing, target=target)
    classes = dict(sorted(((str(k), n) for k, n in tally.values.items()), key=lambda kv: (-kv[1], kv[0])))
    return LabelProfile(column=name, task=task, missing=tally.missing, classes=classes)


def profile_table(
    source: Path | bytes, fmt: TableFormat, *, label_column: str | None = None, task: Task | None = None
) -> DatasetProfile:
    """Profile a table in one streamed pass; `problem` says why no model could train on it, if so."""
    try:
        return _profile(source, fmt, label_column, task, whole=False)
    except Retyped:
        return _profile(source, fmt, label_column, task, whole=True)


def _profile(
    source: Path | bytes, fmt: TableFormat, label_column: str | None, task: Task | None, *, whole: bool
) -> DatasetProfile:
    tallies: dict[str, _Tally] = {}
    label = ""
    for batch in read_batches(source, fmt, whole=whole):
        if not tallies:
            names = batch.schema.names
            if len(set(names)) != len(names):
                raise TableError(f"the header names a column twice: {', '.join(names)}")
            label = guess_label(names, label_column)
            tallies = {f.name: _Tally(f.type, keep_counts=f.name == label) for f in batch.schema}
        for name, column in zip(batch.schema.names, batch.columns, strict=True):
            tallies[name].add(column)
    if not tallies:
        raise TableError("the table has no columns")
    columns, dropped, used = [], {}, []
    for name, tally in tallies.items():
        kind = tally.kind()
        reason = None if name == label else _unused(name, tally, kind)
        if reason:
            dropped[name] = reason
        elif name != label:
            used.append(name)
        columns.append(
            ColumnProfile(
                name=name,
                kind=kind,
                arrow_type=str(tally.type),
                missing=tally.missing,
                distinct=len(tally.values),
                distinct_more=tally.capped,
                used=reason is None and name != label,
                reason=reason,
            )
        )
    target = _label(label, tallies[label], tallies[label].kind(), task)
    rows = tallies[label].rows
    return DatasetProfile(
        format=fmt,
        rows=rows,
        columns=columns,
        label=target,
        used=used,
        dropped=dropped,
        problem=_problem(rows, used, dropped, target),
    )


def _problem(rows: int, used: list[str], dropped: dict[str, str], label: LabelProfile) -> str | None:
    if rows == 0:
        return "the table has no rows"
    if not used:
        why = "; ".join(f"{c}: {r}" for c, r in dropped.items()) or "it has only the label column"
        return f"no column a model can use besides the label {label.column!r} ({why})"
    if label.task == "classification" and len(label.classes) < 2:
        return f"the label column {label.column!r} has {len(label.classes)} class(es): a classifier needs two"
    if label.task == "regression" and (label.target is None or label.target.std == 0):
        return f"the label column {label.column!r} has one value: nothing to regress"
    return None
