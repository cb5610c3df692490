"""Bring-your-own ONNX: validate a user's file before it may enter the registry.

Refused, with the reason: a symlink, a file over the size limit, an external-data reference that
is absolute, climbs out with `..`, is itself a symlink or is missing, a range of external data
that runs past the end of its file or whose length is not the size its tensor declares (what
ONNX Runtime would read and fail on at every request), a graph `onnx.checker` rejects, and inputs
or outputs without a tensor type.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import onnx
from onnx import TensorProto, helper

from .errors import CompileError

MAX_BYTES = 2 << 30  # protobuf's own ceiling for one file

# ONNX element types ↔ Open Inference Protocol datatypes.
_DATATYPES: dict[int, str] = {  # ONNX element type -> Open Inference Protocol datatype
    TensorProto.FLOAT: "FP32",
    TensorProto.DOUBLE: "FP64",
    TensorProto.FLOAT16: "FP16",
    TensorProto.INT8: "INT8",
    TensorProto.INT16: "INT16",
    TensorProto.INT32: "INT32",
    TensorProto.INT64: "INT64",
    TensorProto.UINT8: "UINT8",
    TensorProto.UINT16: "UINT16",
    TensorProto.UINT32: "UINT32",
    TensorProto.UINT64: "UINT64",
    TensorProto.BOOL: "BOOL",
    TensorProto.STRING: "BYTES",
}


class InvalidModel(CompileError):
    """The file is not an ONNX model Fermion will register; the message says why."""


@dataclass(frozen=True)
class Tensor:
    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class ValidatedModel:
    """A model that passed: its files (model.onnx plus external data, by flat name) and signature."""

    files: dict[str, bytes]
    inputs: list[Tensor]
    outputs: list[Tensor]
    opset: int
    node_count: int


def _tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Every tensor a graph holds: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for g in attr.graphs:
                yield from _tensors(g)


def _external_locations(model: onnx.ModelProto) -> set[str]:
    locations = set()
    for tensor in _tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            info = {e.key: e.value for e in tensor.external_data}
            locations.add(info.get("location", ""))
    return locations


def _check_ranges(model: onnx.ModelProto, sizes: dict[str, int]) -> None:
    """Every external tensor's bytes lie within its file, and are as many as its dims and type need."""
    for tensor in _tensors(model.graph):
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in tensor.external_data}
        location, offset = info.get("location", ""), int(info.get("offset", 0) or 0)
        if tensor.data_type in (TensorProto.STRING, TensorProto.UNDEFINED):
            raise InvalidModel(f"tensor {tensor.name!r} keeps a {tensor.data_type} tensor in external data")
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
        needed = int(np.prod(tensor.dims, dtype=np.int64)) * itemsize
        length = int(info["length"]) if info.get("length") else needed
        if length != needed:
            raise InvalidModel(
                f"tensor {tensor.name!r} declares {needed} bytes ({list(tensor.dims)}) but its external data "
                f"entry says {length}"
            )
        if offset < 0 or offset + length > sizes[location]:
            raise InvalidModel(
                f"tensor {tensor.name!r} reads bytes {offset}..{offset + length} of {location!r}, "
                f"which has {sizes[location]}: the file is truncated or the offset is wrong"
            )


def validate_onnx(path: Path, *, max_bytes: int = MAX_BYTES) -> ValidatedModel:
    """Check an ONNX file and its external data; return what to register, or raise InvalidModel."""
    if path.is_symlink():
        raise InvalidModel(f"{path} is a symbolic link; push the file itself")
    if not path.is_file():
        raise InvalidModel(f"{path} is not a regular file")
    total = path.stat().st_size
    if total > max_bytes:
        raise InvalidModel(f"{path} is {total} bytes; the limit is {max_bytes}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise InvalidModel(f"{path} is not an ONNX model: {type(exc).__name__}: {exc}") from exc
    base = path.resolve().parent
    files = {"model.onnx": path.read_bytes()}
    for location in sorted(_external_locations(model)):
        pure = PurePosixPath(location)
        if not location or pure.is_absolute() or Path(location).is_absolute():
            raise InvalidModel(
                f"external data location {location!r} is absolute; it must be a file name beside the model"
            )
        if ".." in pure.parts or len(pure.parts) != 1:
            raise InvalidModel(
                f"external data location {location!r} leaves the model's directory "
                "(contains '..' or a sub-directory); it must be a file name beside the model"
            )
        data_path = base / location
        if data_path.is_symlink():
            raise InvalidModel(f"external data file {location!r} is a symbolic link")
        if not data_path.is_file():
            raise InvalidModel(f"external data file {location!r} is missing beside {path.name}")
        if location in files or location == "manifest.json" or location.startswith("."):
            raise InvalidModel(f"external data file name {location!r} is reserved")
        total += data_path.stat().st_size
        if total > max_bytes:
            raise InvalidModel(f"{path} with its external data is over the limit of {max_bytes} bytes")
        files[location] = data_path.read_bytes()
    _check_ranges(model, {name: len(data) for name, data in files.items()})
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise InvalidModel(f"onnx.checker rejected {path.name}: {exc}") from exc
    inputs = [_tensor(v, "input") for v in model.graph.input if v.name not in {i.name for i in model.graph.initializer}]
    outputs = [_tensor(v, "output") for v in model.graph.output]
    if not inputs or not outputs:
        raise InvalidModel(f"{path.name} declares {len(inputs)} inputs and {len(outputs)} outputs; it needs both")
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ValidatedModel(files, inputs, outputs, opset, len(model.graph.node))


def _tensor(value: onnx.ValueInfoProto, kind: str) -> Tensor:
    if not value.type.HasField("tensor_type"):
        raise InvalidModel(f"{kind} {value.name!r} is not a tensor")
    t = value.type.tensor_type
    if t.elem_type not in _DATATYPES:
        raise InvalidModel(f"{kind} {value.name!r} has an unsupported element type {t.elem_type}")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return Tensor(value.name, _DATATYPES[t.elem_type], shape)
