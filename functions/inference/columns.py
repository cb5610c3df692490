"""`:predict` rows as a model's inputs, and its outputs as answers people can use.

Three kinds of model take rows (`feeds`):
- a table model (its manifest has `features`, `model_store/features.py`): rows are objects keyed by
  column name in any order, or lists in the schema's column order; the recorded label column and the
  columns the trainer dropped are ignored, a missing or unknown column is a 400 naming it; each column
  becomes its own [N, 1] input, FP32 (blanks NaN, booleans 0/1) or BYTES (blanks "");
- any other graph: objects keyed by graph input name, each value one row of that input, cast to its
  datatype strictly (a 400 names a missing input or a value of the wrong type);
- a single-input graph: lists, one per row, as `:predict` always took them.

The answer (`answer`): class names and probabilities for classifiers (the graph's `probabilities`
output, else a softmax of its output when the manifest has labels), values in the label's units for
regression, the first output's rows for anything else.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from fermion.model_store.features import PREDICTION, PROBABILITIES, Column, FeatureSchema

from .errors import BadRequest
from .protocol import RequestInput, datatype_name, to_array
from .runtime import LoadedModel

TRUE = frozenset({"true", "yes", "y", "t", "1"})
FALSE = frozenset({"false", "no", "n", "f", "0"})
# What pyarrow's CSV reader takes for a blank by default: the trainer's reading of the same file.
NULLS = frozenset(
    {"", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN", "N/A", "NA", "NULL"}
    | {"NaN", "n/a", "nan", "null"}
)
SHOWN = 10  # names listed in a refusal before "and N more"


def schema_of(model: LoadedModel) -> FeatureSchema | None:
    """The model's feature schema, if it was trained on a table."""
    features = model.manifest.features
    return FeatureSchema.model_validate(features) if features else None


def feeds(model: LoadedModel, instances: list[Any]) -> dict[str, np.ndarray]:
    """The rows as the model's inputs; BadRequest naming what does not fit."""
    schema = schema_of(model)
    if schema is not None:
        return _table_feeds(model, schema, instances)
    if all(isinstance(row, dict) for row in instances):
        return {name: _named_input(name, dtype, shape, instances) for name, (dtype, shape) in model.inputs.items()}
    if any(isinstance(row, dict) for row in instances):
        raise BadRequest("instances must be all objects or all lists")
    if len(model.inputs) != 1:
        raise BadRequest(
            f"model {model.name} has {len(model.inputs)} inputs: send each row as an object keyed by "
            f"input name ({', '.join(model.inputs)})"
        )
    ((name, (dtype, _)),) = model.inputs.items()
    widths = {len(row) for row in instances}
    if len(widths) > 1:
        raise BadRequest(f"instances must be rows of equal length; got lengths {sorted(widths)}")
    return {name: _cast(name, dtype, instances)}


# --- table models ------------------------------------------------------------------------------------


def _table_feeds(model: LoadedModel, schema: FeatureSchema, instances: list[Any]) -> dict[str, np.ndarray]:
    names = schema.names()
    known = {schema.label, *schema.dropped, *names}
    rows = [
        _by_name(names, known, row, i) if isinstance(row, dict) else _by_position(names, row, i)
        for i, row in enumerate(instances)
    ]
    out: dict[str, np.ndarray] = {}
    for column, values in zip(schema.columns, zip(*rows, strict=True), strict=True):
        array = _column(column, list(values))
        rank = len(model.inputs[column.name][1]) if column.name in model.inputs else 2
        out[column.name] = array.reshape(-1, 1) if rank == 2 else array
    return out


def _column(column: Column, values: list[Any]) -> np.ndarray:
    """One column's values as its graph input; plain numbers and plain text skip the per-cell reading."""
    if column.datatype == "BYTES":
        if all(type(v) is str for v in values):
            array = np.empty(len(values), dtype=object)
            array[:] = values
            return array
        return np.asarray([_cell(column, v, i) for i, v in enumerate(values)], dtype=object)
    if all(type(v) in (int, float, bool) for v in values):
        array = np.asarray(values, dtype=np.float32)
        if column.kind != "boolean" or np.isin(array, (0.0, 1.0)).all():
            return array
    elif column.kind != "boolean" and all(type(v) is str for v in values):  # a CSV's numbers, as text
        try:
            return np.asarray(values, dtype=np.float32)
        except ValueError:
            pass  # a blank or a word: read cell by cell, which names it
    return np.asarray([_cell(column, v, i) for i, v in enumerate(values)], dtype=np.float32)


def _by_name(names: list[str], known: set[str], row: dict[str, Any], i: int) -> list[Any]:
    """The row's values in the model's column order; its label and dropped columns (in `known`) ignored."""
    try:
        values = [row[n] for n in names]
    except KeyError:
        values = []
    if values and len(row) == len(names):
        return values  # the common case: exactly the model's columns
    missing = [n for n in names if n not in row]
    unknown = [k for k in row if k not in known]
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"missing column(s) {_listed(missing)}")
        if unknown:
            problems.append(f"unknown column(s) {_listed(unknown)}")
        raise BadRequest(f"row {i}: {'; '.join(problems)}; the model takes {_listed(names)}")
    return [row[n] for n in names]


def _by_position(names: list[str], row: list[Any], i: int) -> list[Any]:
    if len(row) != len(names):
        raise BadRequest(
            f"row {i} has {len(row)} values; the model takes {len(names)} columns in this order: {_listed(names)} "
            "(or send objects keyed by column name)"
        )
    return row


def _cell(column: Column, value: Any, i: int) -> float | str:
    """One value as its graph input takes it: FP32 (blank NaN, booleans 0/1) or a string (blank "")."""
    if column.datatype == "BYTES":
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        if isinstance(value, str | int | float):
            return str(value)
        raise BadRequest(f"row {i}, column {column.name!r}: {_shown(value)} is not a category")
    if value is None or (isinstance(value, str) and value.strip() in NULLS):
        return math.nan
    if column.kind == "boolean":
        return _boolean(column, value, i)
    if isinstance(value, bool | int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise BadRequest(f"row {i}, column {column.name!r}: {_shown(value)} is not a number")


def _boolean(column: Column, value: Any, i: int) -> float:
    if isinstance(value, bool | int | float) and value in (0, 1):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in TRUE or text in column.true_values:
            return 1.0
        if text in FALSE:
            return 0.0
    raise BadRequest(f"row {i}, column {column.name!r}: {_shown(value)} is not a boolean (true/false, yes/no, 1/0)")


def oip_feeds(tensors: list[RequestInput], binary: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A table model's OIP v2 tensors: BYTES columns as text (JSON strings, or UTF-8 in binary), others as sent."""
    feeds = {}
    for tensor in tensors:
        if tensor.datatype != "BYTES":
            feeds[tensor.name] = to_array(tensor, binary)
            continue
        sent = binary[tensor.name].ravel().tolist() if tensor.name in binary else _flat(tensor.data)
        try:
            text = [v.decode("utf-8") if isinstance(v, bytes) else v for v in sent]
        except UnicodeDecodeError as exc:
            raise BadRequest(f"input {tensor.name!r}: BYTES elements must be UTF-8 text ({exc})") from exc
        if not all(isinstance(v, str) for v in text):
            raise BadRequest(f"input {tensor.name!r}: BYTES data in JSON must be strings")
        if len(text) != math.prod(tensor.shape) or any(d < 0 for d in tensor.shape):
            raise BadRequest(f"input {tensor.name!r}: shape {tensor.shape} needs {math.prod(tensor.shape)} elements")
        array = np.empty(len(text), dtype=object)
        array[:] = text
        feeds[tensor.name] = array.reshape(tensor.shape)
    return feeds


def _flat(data: list[Any]) -> list[Any]:
    """Nested JSON lists in row-major order."""
    out: list[Any] = []
    stack = [data]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


# --- other graphs ------------------------------------------------------------------------------------


def _named_input(name: str, dtype: np.dtype, shape: list[int | None], instances: list[dict[str, Any]]) -> np.ndarray:
    for i, row in enumerate(instances):
        if name not in row:
            raise BadRequest(f"row {i} lacks input {name!r}")
    values = [row[name] for row in instances]
    array = _cast(name, dtype, values)
    if array.ndim == 1 and len(shape) == 2:
        array = array.reshape(-1, 1)  # one scalar per row for an [N, 1] input
    return array


def _cast(name: str, dtype: np.dtype, values: list[Any]) -> np.ndarray:
    """`values` as `dtype`, refusing what would be silently changed (a float into an integer input)."""
    kind = np.dtype(dtype).kind
    allowed: tuple[type, ...] = {"i": (int,), "u": (int,), "b": (bool,), "O": (str,)}.get(kind, (int, float))
    if (bad := _first_bad(values, allowed, bool_ok=kind in "fb")) is not None:
        raise BadRequest(f"input {name!r} takes {datatype_name(dtype)} values; got {_shown(bad)}")
    try:
        return np.asarray(values, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"input {name!r}: rows must be {datatype_name(dtype)} values of one shape ({exc})") from exc


def _first_bad(values: Any, allowed: tuple[type, ...], *, bool_ok: bool) -> Any:
    """The first leaf of nested lists `values` that is not of an allowed type (None: all are)."""
    stack = [values]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif (isinstance(item, bool) and not bool_ok and bool not in allowed) or not isinstance(item, allowed):
            return item
    return None


def _listed(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- answers -----------------------------------------------------------------------------------------


def answer(model: LoadedModel, results: dict[str, np.ndarray]) -> dict[str, Any]:
    """`predictions` (class names, values, or the first output's rows); a classifier's `probabilities`, `classes`."""
    schema = schema_of(model)
    classes: list[Any] = list(model.manifest.labels or (schema.classes if schema else []))
    first = next(iter(results.values()))
    if PREDICTION in results and (schema is None or schema.task == "regression"):
        values = results[PREDICTION]
        if values.ndim == 2 and values.shape[1] == 1:
            values = values[:, 0]  # one value per row, in the label's units
        return {"predictions": _plain(values)}
    probabilities = results.get(PROBABILITIES)
    if probabilities is None and classes and first.ndim == 2 and first.shape[1] == len(classes):
        probabilities = _probabilities(first)
    if probabilities is None or probabilities.ndim != 2:
        return {"predictions": _plain(first)}
    if len(classes) != probabilities.shape[1]:
        classes = list(range(probabilities.shape[1]))  # no names recorded: class indices
    picked = probabilities.argmax(axis=1) if len(probabilities) else np.zeros(0, np.int64)
    return {
        "predictions": [classes[k] for k in picked.tolist()],
        "probabilities": _plain(probabilities),
        "classes": classes,
    }


def _probabilities(out: np.ndarray) -> np.ndarray:
    """Rows that already are probabilities as they are, else a softmax of them (logits)."""
    out = out.astype(np.float64)
    if len(out) and (out >= 0).all() and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return out
    shifted = np.exp(out - out.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


_TEXT = np.frompyfunc(lambda v: v.decode("utf-8", "replace") if isinstance(v, bytes) else v, 1, 1)


def _plain(array: np.ndarray) -> Any:
    """An array as JSON values; NaN and infinity (which JSON cannot carry) as null."""
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        cells = array.astype(object)
        cells[~np.isfinite(array)] = None
        return cells.tolist()
    if array.dtype == object:
        return _TEXT(array).tolist() if array.ndim else array.item()
    return array.tolist()
