"""Open Inference Protocol v2 (KServe/Triton) request and response bodies, and tensor conversion."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .errors import BadRequest
from .runtime import DATATYPES, datatype_of


class RequestInput(BaseModel):
    """One input tensor: name, shape, datatype and its data, flat or nested, in row-major order."""

    model_config = ConfigDict(extra="ignore")

    name: str
    shape: list[int] = Field(max_length=16)
    datatype: str
    data: list[Any]
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


def to_array(tensor: RequestInput) -> np.ndarray:
    """The request tensor as a numpy array of its declared datatype and shape."""
    dtype = DATATYPES.get(tensor.datatype)
    if dtype is None:
        raise BadRequest(
            f"input {tensor.name!r}: unsupported datatype {tensor.datatype!r}; use one of {', '.join(DATATYPES)}"
        )
    if any(d < 0 for d in tensor.shape):
        raise BadRequest(f"input {tensor.name!r}: shape {tensor.shape} has a negative dimension")
    try:
        array = np.asarray(tensor.data, dtype=dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise BadRequest(f"input {tensor.name!r}: data is not all {tensor.datatype} ({exc})") from exc
    expected = int(np.prod(tensor.shape, dtype=np.int64))
    if array.size != expected:
        raise BadRequest(
            f"input {tensor.name!r}: shape {tensor.shape} needs {expected} elements, data has {array.size}"
        )
    return array.reshape(tensor.shape)


def parse_request(body: bytes) -> InferenceRequest:
    """The request body as an InferenceRequest; BadRequest naming what is wrong otherwise."""
    try:
        return InferenceRequest.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'body'}: {e['msg']}" for e in exc.errors()[:5])
        raise BadRequest(f"invalid inference request: {problems}") from exc


def encode_response(
    model_name: str, version: int, request_id: str | None, results: dict[str, np.ndarray], variant: str
) -> bytes:
    """The inference response as JSON bytes, built directly: the hot path skips model validation."""
    body: dict[str, Any] = {"model_name": model_name, "model_version": str(version)}
    if request_id is not None:
        body["id"] = request_id
    body["parameters"] = {"variant": variant}
    body["outputs"] = [
        {"name": n, "shape": list(a.shape), "datatype": datatype_of(a.dtype), "data": a.ravel().tolist()}
        for n, a in results.items()
    ]
    return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
