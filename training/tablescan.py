"""A table file read in streamed passes, never whole: its exact column types and label first, then columns.

Torch-free. A CSV is typed by pyarrow as `pyarrow.csv.read_csv` types it, without holding the table:
the stream is typed from its first block, and when a later block disagrees ("In CSV column #i") that
column alone is typed by reading it whole (`read_csv` of one column), and the stream starts again with
that type fixed. Parquet files carry their types. Later passes read groups of columns (bounded bytes)
or every used column in record batches; the Arrow pool's unused memory goes back to the system after
each pass, so a trainer's peak stays near the float32 matrix it fills.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from .errors import DatasetError

BLOCK_BYTES = 1 << 20
"""A CSV stream's block, parsed on this thread: larger blocks or read-ahead threads cost hundreds of MB."""
LADDER = (
    pa.null(),
    pa.int64(),
    pa.bool_(),
    pa.date32(),
    pa.time32("s"),
    pa.timestamp("s"),
    pa.timestamp("ns"),
    pa.float64(),
    pa.string(),
    pa.binary(),
)
"""pyarrow's CSV type inference, narrowest first: a column takes the first kind all its values convert to."""
GROUP_BYTES = 64 << 20
"""About how many bytes of typed columns one fitting pass holds (8 bytes a value)."""
PARQUET_ROWS = 1 << 16
_COLUMN = re.compile(r"In CSV column #(\d+)")
_ROW = re.compile(r"Row #\d+")
Chooser = Callable[[list[str]], str]


@dataclass(frozen=True)
class Source:
    """A table file, its column names and (a CSV's) exact types: what every later pass reads with."""

    path: Path
    fmt: str
    names: list[str]
    types: dict[str, pa.DataType]
    rows: int
    """Rows in the file, labelled or not."""


def _failure(fmt: str, exc: Exception) -> DatasetError:
    # pyarrow quotes the offending row after a colon: keep it out
    parts = str(exc).splitlines()[0].split(": ")
    keep = 3 if len(parts) > 3 and _ROW.fullmatch(parts[1]) else 2  # a stream names the row first
    reason = ": ".join(parts[:keep])
    return DatasetError(f"{fmt} dataset does not parse: {reason}")


def _open(
    path: Path, fmt: str, columns: list[str] | None, types: dict[str, pa.DataType]
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    if fmt == "parquet":
        file = pq.ParquetFile(path)
        schema = file.schema_arrow if columns is None else pa.schema([file.schema_arrow.field(n) for n in columns])
        return schema, file.iter_batches(batch_size=PARQUET_ROWS, columns=columns)
    convert = pacsv.ConvertOptions(strings_can_be_null=True, column_types=types, include_columns=columns or [])
    read = pacsv.ReadOptions(block_size=BLOCK_BYTES, use_threads=False)
    reader = pacsv.open_csv(path, read_options=read, convert_options=convert)
    return reader.schema, iter(reader)


def batches(source: Source, columns: list[str] | None = None) -> Iterator[pa.RecordBatch]:
    """The file's record batches, of `columns` only (all if None), with the exact types."""
    try:
        yield from _open(source.path, source.fmt, columns, source.types)[1]
    except (pa.ArrowInvalid, OSError) as exc:
        raise _failure(source.fmt, exc) from None
    finally:
        pa.default_memory_pool().release_unused()


def _column_type(path: Path, name: str, failed: pa.DataType) -> pa.DataType:
    """The type `read_csv` gives column `name` once `failed` did not fit a value: the next kind that fits all.

    Each try streams that column alone (a whole-file read of even one column holds every parsed block).
    """
    later = LADDER[LADDER.index(failed) + 1 :] if failed in LADDER else (pa.string(), pa.binary())
    for kind in later:
        try:
            for _ in _open(path, "csv", [name], {name: kind})[1]:
                pass
            return kind
        except pa.ArrowInvalid:
            continue
        finally:
            pa.default_memory_pool().release_unused()
    return pa.binary()


def _label_pass(path: Path, fmt: str, types: dict[str, pa.DataType], choose: Chooser) -> tuple[Source, pa.ChunkedArray]:
    schema, stream = _open(path, fmt, None, types)
    names = schema.names
    label = choose(names) if names else ""
    chunks: list[pa.Array] = []
    rows = 0
    for batch in stream:
        if label:
            chunks.append(batch.column(label))
        rows += batch.num_rows
    exact = {f.name: f.type for f in schema} if fmt == "csv" else {}
    kind = schema.field(label).type if label else pa.null()
    return Source(path, fmt, names, exact, rows), pa.chunked_array(chunks, kind)


def scan(path: Path, fmt: str, choose: Chooser) -> tuple[Source, str, pa.ChunkedArray]:
    """The file's names, exact types and row count, the label `choose(names)` picks, and its column."""
    types: dict[str, pa.DataType] = {}
    for _ in range(1_000):  # each retyping widens a column: bounded all the same
        try:
            source, column = _label_pass(path, fmt, types, choose)
            return source, choose(source.names) if source.names else "", column
        except pa.ArrowInvalid as exc:
            found = _COLUMN.search(str(exc)) if fmt == "csv" else None
            if found is None:
                raise _failure(fmt, exc) from None
            field = _open(path, fmt, None, types)[0].field(int(found.group(1)))
            if field.type == pa.binary():
                raise _failure(fmt, exc) from None
            types[field.name] = _column_type(path, field.name, field.type)
        except OSError as exc:
            raise _failure(fmt, exc) from None
        finally:
            pa.default_memory_pool().release_unused()
    raise DatasetError(f"{fmt} dataset does not parse: its column types never settle")


def groups(names: list[str], rows: int) -> list[list[str]]:
    """`names` in groups of about GROUP_BYTES of typed values each (all at once for a small table)."""
    size = max(1, GROUP_BYTES // max(8 * rows, 1))
    return [names[i : i + size] for i in range(0, len(names), size)]


def columns(source: Source, names: list[str], keep: np.ndarray | None) -> dict[str, pa.ChunkedArray]:
    """The `names` columns whole, of the rows `keep` marks (all if None)."""
    parts: dict[str, list[pa.Array]] = {n: [] for n in names}
    schema: pa.Schema | None = None
    for _, batch in rows_of(source, names, keep):
        schema = batch.schema
        for n in names:
            parts[n].append(batch.column(n))
    if schema is None:
        schema = _open(source.path, source.fmt, names, source.types)[0]
    return {n: pa.chunked_array(parts[n], schema.field(n).type) for n in names}


def rows_of(source: Source, names: list[str], keep: np.ndarray | None) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Record batches of `names` with only the rows `keep` marks, each with its first kept row's index."""
    start, at = 0, 0
    for batch in batches(source, names):
        if keep is not None:
            mask = keep[start : start + batch.num_rows]
            start += batch.num_rows
            batch = batch.filter(pa.array(mask))
        yield at, batch
        at += batch.num_rows
