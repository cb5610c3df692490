"""Bring-your-own ONNX: validate a user's file before it may enter the registry.

Refused, with the reason: a symlink, a file over the size limit, an external-data reference that
is absolute, climbs out with `..`, is itself a symlink or is missing, a range of external data
that runs past the end of its file or whose length is not the size its tensor declares (what
ONNX Runtime would read and fail on at every request), a graph `onnx.checker` rejects, and inputs
or outputs without a tensor type, a file name the registry writes itself (`RESERVED_NAMES`), and a
graph ONNX Runtime cannot load (an op of a custom domain, an IR version it does not read): the
file is loaded into a CPU session here, with its external data, so it fails at push, not at serve.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper

from .errors import CompileError

MAX_BYTES = 2 << 30  # protobuf's own ceiling for one file

# What the registry writes into a version beside a pushed file: the model, its compiled variants
# (compile/variants.py), the manifest and its signature (model_store). A pushed file of one of these
# names would replace the model or collide with the registry's own write after the version is taken.
RESERVED_NAMES = frozenset({"model.onnx", "model.int8.onnx", "model.fp16.onnx", "manifest.json", "signature.json"})
_ORT_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}

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
        if location in RESERVED_NAMES or location.startswith("."):
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
    _check_loads(path, model)
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return ValidatedModel(files, inputs, outputs, opset, len(model.graph.node))


def _check_loads(path: Path, model: onnx.ModelProto) -> None:
    """ONNX Runtime builds a CPU session of the file and its external data, or InvalidModel says why."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # loading is the question
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime's pybind errors share no base class but Exception
        custom = sorted({(n.op_type, n.domain) for n in _nodes(model.graph) if n.domain not in _ORT_DOMAINS})
        if custom:
            ops = ", ".join(f"op {op!r} of domain {domain!r}" for op, domain in custom)
            raise InvalidModel(
                f"ONNX Runtime cannot load {path.name}: {ops} (custom op domains are not served)"
            ) from None
        raise InvalidModel(f"ONNX Runtime cannot load {path.name}: {_ort_reason(str(exc))}") from None


def _nodes(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
    """Every node of a graph, its subgraphs' included."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.HasField("g"):
                yield from _nodes(attr.g)
            for g in attr.graphs:
                yield from _nodes(g)


def _ort_reason(message: str) -> str:
    """ONNX Runtime's message without its error code, the file's path or its own source location."""
    reason = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", message)
    reason = re.sub(r"^Load model from .*? failed:", "", reason)
    reason = re.sub(r"^\S*\.(?:cc|cpp|h):\d+ [\w:~<>]+\([^)]*\) ", "", reason)  # where in its C++ source
    return re.sub(r"\S*/\S*", "<path>", reason).strip()  # anything path-like left


def _tensor(value: onnx.ValueInfoProto, kind: str) -> Tensor:
    if not value.type.HasField("tensor_type"):
        raise InvalidModel(f"{kind} {value.name!r} is not a tensor")
    t = value.type.tensor_type
    if t.elem_type not in _DATATYPES:
        raise InvalidModel(f"{kind} {value.name!r} has an unsupported element type {t.elem_type}")
    shape = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    return Tensor(value.name, _DATATYPES[t.elem_type], shape)
