"""Open Inference Protocol v2 (KServe/Triton) request and response bodies, and tensor conversion."""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Set as AbstractSet
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import to_json

from fermion.service.responses import describe_validation

from .errors import BadRequest

# Open Inference Protocol datatypes ↔ numpy.
DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_DATATYPE_OF = {v: k for k, v in DATATYPES.items()}


def datatype_of(dtype: np.dtype) -> str:
    """The Open Inference Protocol name of a numpy dtype (BYTES for anything else)."""
    return _DATATYPE_OF.get(np.dtype(dtype), "BYTES")


def onnx_dtype(type_name: str) -> np.dtype:
    """The numpy dtype of an ONNX Runtime input or output type ('tensor(float)'); float32 if unknown."""
    table = {
        "float": np.float32,
        "double": np.float64,
        "float16": np.float16,
        "int64": np.int64,
        "int32": np.int32,
        "int16": np.int16,
        "int8": np.int8,
        "uint8": np.uint8,
        "uint16": np.uint16,
        "uint32": np.uint32,
        "uint64": np.uint64,
        "bool": np.bool_,
        "string": object,  # BYTES: a table model's category columns
    }
    return np.dtype(table.get(type_name.removeprefix("tensor(").removesuffix(")"), np.float32))


def datatype_name(dtype: np.dtype) -> str:
    """The protocol's name for `dtype` where it has one, else numpy's (for error messages)."""
    return _DATATYPE_OF.get(np.dtype(dtype), str(dtype))


class RequestInput(BaseModel):
    """One input tensor: name, shape, datatype and its data, flat or nested, in row-major order."""

    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[int] = Field(max_length=16)
    datatype: str
    data: list[Any] = []
    parameters: dict[str, Any] | None = None


class RequestOutput(BaseModel):
    """An output the client wants back."""

    model_config = ConfigDict(extra="ignore")

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """POST /v2/models/{name}[/versions/{v}]/infer."""

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None

    @model_validator(mode="after")
    def _unique_names(self) -> InferenceRequest:
        for kind, tensors in (("input", self.inputs), ("output", self.outputs or [])):
            names = [t.name for t in tensors]
            if duplicates := sorted({n for n in names if names.count(n) > 1}):
                raise ValueError(f"{kind} names must be unique; {duplicates} appear more than once")
        return self


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[Any]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


def to_array(tensor: RequestInput, binary: dict[str, np.ndarray] | None = None) -> np.ndarray:
    """The request tensor as a numpy array of its declared datatype and shape."""
    if binary and tensor.name in binary:
        return binary[tensor.name]
    if tensor.datatype == "BYTES":  # encoded pictures, decoded for the model by images.py
        return bytes_from_json(tensor.name, tensor.data, tensor.shape)
    dtype = _dtype(tensor)
    try:
        array = np.asarray(tensor.data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"input {tensor.name!r}: data is not all {tensor.datatype} ({exc})") from exc
    expected = math.prod(tensor.shape)
    if array.size != expected:
        raise BadRequest(
            f"input {tensor.name!r}: shape {tensor.shape} needs {expected} elements, data has {array.size}"
        )
    return array.reshape(tensor.shape)


SUMMED_ELEMENTS = 256
"""Up to this many elements, `all_finite` adds the values up in Python instead of asking numpy."""


def all_finite(array: np.ndarray) -> bool:
    """Whether a float array holds no NaN and no infinity.

    A small one is checked by its sum: any NaN or infinity makes the sum NaN or infinite. In a
    request's context a numpy reduction (`isfinite(...).all()`) cost ~18 µs on one 64-value row, the
    Python sum of its values ~1 (bench/warm_path.py, "in context"), though alone each takes 1-2 µs.
    A sum can also overflow (float64 values near their maximum): numpy then decides, as it does for
    a large array.
    """
    small = array.size <= SUMMED_ELEMENTS and array.dtype.itemsize <= 8  # Python floats: float16 to float64
    if small and math.isfinite(sum(array.ravel().tolist())):
        return True
    return bool(np.isfinite(array).all())


def _dtype(tensor: RequestInput) -> np.dtype:
    """The tensor's numpy dtype, once its datatype and shape are known to be valid."""
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise BadRequest(
            f"input {tensor.name!r}: unsupported datatype {tensor.datatype!r}; use one of {', '.join(DATATYPES)}"
        )
    if any(d < 0 for d in tensor.shape):
        raise BadRequest(f"input {tensor.name!r}: shape {tensor.shape} has a negative dimension")
    return dtype


HEADER_LENGTH = "inference-header-content-length"
INFER_PATHS = ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{model_version}/infer")


def parse_request(body: bytes, header_length: str | None = None) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """The request and its binary tensors (binary tensor extension); BadRequest naming what is wrong.

    With `header_length` (the Inference-Header-Content-Length header) the body is that many bytes of
    JSON followed by the raw little-endian data of every input whose `binary_data_size` is set, in order.
    """
    if header_length is None:
        return _parse_json(body), {}
    try:
        n = int(header_length)
    except ValueError:
        raise BadRequest(f"Inference-Header-Content-Length must be an integer; got {header_length!r}") from None
    if not 0 < n <= len(body):
        raise BadRequest(f"Inference-Header-Content-Length {n} does not fit a body of {len(body)} bytes")
    request = _parse_json(body[:n])
    binary: dict[str, np.ndarray] = {}
    offset = n
    for tensor in request.inputs:
        size = (tensor.parameters or {}).get("binary_data_size")
        if size is None:
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(body):
            raise BadRequest(f"input {tensor.name!r}: binary_data_size {size!r} runs past the end of the body")
        if tensor.datatype == "BYTES":  # encoded pictures, decoded for the model by images.py
            binary[tensor.name] = split_bytes(body[offset : offset + size], tensor.name, tensor.shape)
            offset += size
            continue
        dtype = _dtype(tensor)
        expected = math.prod(tensor.shape) * dtype.itemsize
        if size != expected:
            raise BadRequest(
                f"input {tensor.name!r}: shape {tensor.shape} of {tensor.datatype} needs {expected} "
                f"bytes, binary_data_size is {size}"
            )
        binary[tensor.name] = np.frombuffer(
            body, dtype=dtype.newbyteorder("<"), count=expected // dtype.itemsize, offset=offset
        ).reshape(tensor.shape)
        offset += size
    if offset != len(body):
        raise BadRequest(f"{len(body) - offset} bytes after the last binary input are unaccounted for")
    return request, binary


def _parse_json(body: bytes) -> InferenceRequest:
    try:
        return InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        raise BadRequest(f"invalid inference request: {describe_validation(exc.errors())}") from exc


def encode_response(
    model_name: str,
    version: int,
    request_id: str | None,
    results: dict[str, np.ndarray],
    variant: str,
    binary: AbstractSet[str] = frozenset(),
) -> tuple[bytes, int | None]:
    """The response as bytes, built directly (the hot path skips model validation).

    Outputs named in `binary` go after the JSON as raw bytes (binary tensor extension); the second
    value is then the JSON header's length, for the Inference-Header-Content-Length header.
    """
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request_id is not None:
        body["id"] = request_id
    body["parameters"] = {"variant": variant}
    outputs, blobs = [], []
    for n, a in results.items():
        entry: dict[str, Any] = {"name": n, "shape": list(a.shape), "datatype": datatype_of(a.dtype)}
        if n in binary:
            blob = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")).tobytes()
            entry["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            entry["data"] = a.ravel().tolist()
        outputs.append(entry)
    body["outputs"] = outputs
    # NaN and infinity go out as the literals NaN/Infinity, as Triton writes them (JSON has no spelling).
    header = to_json(body, inf_nan_mode="constants")
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


# --- BYTES tensors: encoded pictures (the binary tensor extension, or base64 strings in JSON) -----


def split_bytes(blob: bytes, name: str, shape: list[int]) -> np.ndarray:
    """A binary BYTES tensor (per element: 4-byte little-endian length, then the bytes) as an object array."""
    elements, offset = [], 0
    while offset < len(blob):
        if offset + 4 > len(blob):
            raise BadRequest(f"input {name!r}: BYTES data ends inside an element's length prefix")
        (n,) = struct.unpack_from("<I", blob, offset)
        if offset + 4 + n > len(blob):
            raise BadRequest(f"input {name!r}: a BYTES element of {n} bytes runs past the end of the data")
        elements.append(blob[offset + 4 : offset + 4 + n])
        offset += 4 + n
    return _shaped(elements, name, shape)


def bytes_from_json(name: str, data: list[Any], shape: list[int]) -> np.ndarray:
    """A JSON BYTES tensor: its elements are base64 strings (JSON cannot carry raw bytes)."""
    flat = np.asarray(data, dtype=object).ravel().tolist()
    if not all(isinstance(e, str) for e in flat):
        raise BadRequest(f"input {name!r}: BYTES data in JSON must be base64 strings")
    return _shaped([unbase64(e, f"input {name!r}") for e in flat], name, shape)


def _shaped(elements: list[bytes], name: str, shape: list[int]) -> np.ndarray:
    expected = int(np.prod(shape)) if shape else 1
    if len(elements) != expected:
        raise BadRequest(f"input {name!r}: shape {shape} needs {expected} BYTES elements, got {len(elements)}")
    array = np.empty(len(elements), dtype=object)
    array[:] = elements
    return array.reshape(shape)


def unbase64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"{where} is not valid base64: {exc}") from exc
