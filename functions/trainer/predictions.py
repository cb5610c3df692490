"""Batch predictions: a registered ONNX model over a stored table, in chunks, written beside an id column.

Blocking (ONNX Runtime and pyarrow); the scoring worker (scoring.py) runs it in a thread. A table
model (its manifest has `features`) takes one tensor per column, by name, as the graph contract
says (model_store/features.py); an older model takes one `input` tensor of the feature columns in
table order: every column but the id column and the label column it was trained with.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from fermion.events import ScoringRequest
from fermion.model_store import DatasetStore, Manifest, Registry
from fermion.model_store.features import LOGITS, PREDICTION, PROBABILITIES, FeatureSchema
from fermion.model_store.tables import BOOLEAN_WORDS, TABLE_FORMATS, Retyped, read_batches
from fermion.training.errors import PermanentJobError

TRUE_WORDS = frozenset({"true", "yes", "y", "t", "1"})
ROW = "row"


class ScoringError(PermanentJobError):
    """The table cannot be scored with this model (a column missing, a format the scorer cannot read)."""


@dataclass(frozen=True)
class Scored:
    """What a finished run wrote."""

    rows: int
    key: str


def scores_key(tenant: str, job_id: str, fmt: str) -> str:
    """Where a scoring job's predictions go in the store."""
    return f"scores/{tenant}/{job_id}.{fmt}"


def score(
    registry: Registry,
    tenant: str,
    job_id: str,
    request: ScoringRequest,
    manifest: Manifest,
    on_chunk: Callable[[int], None],
) -> Scored:
    """Score the request's dataset with `manifest`'s model and put the predictions in the store."""
    ref = request.dataset
    if ref.format not in TABLE_FORMATS:
        raise ScoringError(f"dataset {ref.name!r} is {ref.format}: batch scoring reads csv and parquet tables")
    session = ort.InferenceSession(str(registry.fetch(manifest)), providers=["CPUExecutionProvider"])
    with tempfile.TemporaryDirectory(prefix="fermion-scores-") as tmp:
        table = DatasetStore(registry.store).fetch(
            tenant, ref.name, ref.sha256, ref.format, Path(tmp) / f"table.{ref.format}"
        )
        out = Path(tmp) / f"scores.{request.format}"
        try:
            rows = _write(
                session, manifest, request, _chunks(table, ref.format, request.chunk_rows, False), out, on_chunk
            )
        except Retyped:  # a later CSV block disagreed with the first's types: again, read whole
            rows = _write(
                session, manifest, request, _chunks(table, ref.format, request.chunk_rows, True), out, on_chunk
            )
        key = scores_key(tenant, job_id, request.format)
        registry.store.put(key, out.read_bytes())
    return Scored(rows, key)


def _chunks(path: Path, fmt: str, rows: int, whole: bool) -> Iterator[pa.RecordBatch]:
    for batch in read_batches(path, fmt, whole=whole):  # type: ignore[arg-type]
        for start in range(0, batch.num_rows, rows):
            yield batch.slice(start, rows)


def _write(
    session: ort.InferenceSession,
    manifest: Manifest,
    request: ScoringRequest,
    chunks: Iterator[pa.RecordBatch],
    out: Path,
    on_chunk: Callable[[int], None],
) -> int:
    schema = FeatureSchema.model_validate(manifest.features) if manifest.features else None
    writer: pq.ParquetWriter | pcsv.CSVWriter | None = None
    done = 0
    try:
        for batch in chunks:
            inputs = _inputs(session, manifest, schema, batch, request.id_column)
            outputs = dict(zip([o.name for o in session.get_outputs()], session.run(None, inputs), strict=True))
            ids = batch.column(request.id_column) if request.id_column else pa.array(range(done, done + batch.num_rows))
            table = _predictions(request.id_column or ROW, ids, outputs, manifest, schema)
            if writer is None:
                writer = (
                    pq.ParquetWriter(out, table.schema)
                    if request.format == "parquet"
                    else pcsv.CSVWriter(out, table.schema)
                )
            writer.write_table(table)
            done += batch.num_rows
            on_chunk(done)
        if writer is None:
            raise ScoringError("the table has no rows to score")
    finally:
        if writer is not None:
            writer.close()
    return done


def _inputs(
    session: ort.InferenceSession,
    manifest: Manifest,
    schema: FeatureSchema | None,
    batch: pa.RecordBatch,
    id_column: str | None,
) -> dict[str, np.ndarray]:
    names = batch.schema.names
    if id_column is not None and id_column not in names:
        raise ScoringError(f"the table has no id column {id_column!r}; its columns are {', '.join(names)}")
    if schema is not None:
        missing = [c.name for c in schema.columns if c.name not in names]
        if missing:
            raise ScoringError(f"the table lacks the model's column(s) {', '.join(missing)}")
        return {c.name: _column(batch.column(c.name), c.datatype, c.kind, c.true_values) for c in schema.columns}
    label = str(manifest.lineage.recipe.get("label_column", "label"))
    features = [n for n in names if n not in (id_column, label)]
    spec = session.get_inputs()[0]
    width = spec.shape[1] if len(spec.shape) == 2 and isinstance(spec.shape[1], int) else len(features)
    if len(features) != width:
        raise ScoringError(
            f"the model takes {width} features; the table has {len(features)} besides the id and label "
            f"columns: {', '.join(features)}"
        )
    matrix = np.column_stack([_column(batch.column(n), "FP32", "number", [])[:, 0] for n in features])
    return {spec.name: matrix.astype(np.float32)}


def _column(array: pa.Array, datatype: str, kind: str, true_values: list[str]) -> np.ndarray:
    """One column as its graph input [-1, 1]: FP32 (blanks NaN, booleans 0/1) or BYTES (blanks "")."""
    if datatype == "BYTES":
        text = pc.fill_null(pc.cast(array, pa.string()), "")
        return np.array(text.to_pylist(), dtype=object).reshape(-1, 1)
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        if kind != "boolean":
            raise ScoringError(f"a {kind} column holds text: {array.slice(0, 3).to_pylist()}")
        words = pc.utf8_lower(pc.utf8_trim_whitespace(array)).to_pylist()
        trues = set(true_values) or TRUE_WORDS
        values = [np.nan if w is None or w not in BOOLEAN_WORDS | trues else float(w in trues) for w in words]
        return np.array(values, dtype=np.float32).reshape(-1, 1)
    as_float = pc.cast(array, pa.float64())  # bool → 0/1, integers and numbers as they are
    return as_float.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, 1)


def _predictions(
    id_name: str, ids: pa.Array, outputs: dict[str, np.ndarray], manifest: Manifest, schema: FeatureSchema | None
) -> pa.Table:
    if (schema is not None and schema.task == "regression") or (PREDICTION in outputs and LOGITS not in outputs):
        return pa.table({id_name: ids, "prediction": outputs[PREDICTION].reshape(-1).astype(np.float64)})
    if PROBABILITIES in outputs:
        probabilities = outputs[PROBABILITIES]
    else:
        logits = next(iter(outputs.values())) if LOGITS not in outputs else outputs[LOGITS]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    classes = (schema.classes if schema else []) or manifest.labels or [str(i) for i in range(probabilities.shape[1])]
    best = probabilities.argmax(axis=1)
    columns: dict[str, pa.Array | np.ndarray] = {
        id_name: ids,
        "prediction": pa.array([classes[i] for i in best]),
        "probability": probabilities.max(axis=1).astype(np.float64),
    }
    for i, name in enumerate(classes):
        columns[f"probability_{name}"] = probabilities[:, i].astype(np.float64)
    return pa.table(columns)
