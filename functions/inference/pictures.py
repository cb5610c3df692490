"""Pictures in, predictions out: encoded PNG/JPEG pictures decoded by the model's image contract.

A model trained on pictures carries its image contract in its manifest (`manifest.image`). This
module turns pictures into the tensor that contract describes, with fermion.imaging, the same
decode step the trainer used; the rest of the preprocessing is inside the model's graph. Three
ways in, each a wire format that `pipeline.py` runs like any other:

- `POST /v1/models/{name}:predict` with multipart files, or JSON `{"instances": [{"b64": "..."}]}`:
  answered with each picture's label, class index and probabilities (`PictureRequest`);
- an OIP v2 `BYTES` input (binary tensor extension: 4-byte little-endian length, then the bytes,
  per element; or JSON strings in base64), decoded in place of the model's pixel input (`decode_feeds`);
- raw pixel tensors (FP32 N x H x W x C) still go straight to the model.

A picture that is corrupt, truncated, not PNG/JPEG, of a mode with no conversion, or whose header
claims more pixels than `max_picture_pixels` is a 400 naming the picture and the problem.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncGenerator, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.datastructures import Headers, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from .errors import BadRequest, ModelUnavailable
from .pipeline import Answer
from .protocol import unbase64
from .runtime import LoadedModel

if TYPE_CHECKING:  # Pillow loads with the first picture: a model on features never pays its import
    from fermion.imaging import DecodeSpec, DecodeTarget

INLINE_BYTES = 32 * 1024  # pictures up to this many encoded bytes in all decode on the event loop
MAX_PICTURES = 1024  # in one request
_contracts: dict[str, DecodeSpec] = {}


def contract_of(model: LoadedModel) -> DecodeSpec | None:
    """The decode step of the model's image contract, or None for a model on features."""
    if model.manifest.image is None:
        return None
    key = model.manifest.content_sha256
    if (contract := _contracts.get(key)) is None:
        from fermion.imaging import DecodeSpec

        try:
            contract = _contracts[key] = DecodeSpec.from_mapping(model.manifest.image)
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelUnavailable(f"model {model.name} records an image contract it cannot follow: {exc}") from exc
    return contract


def is_picture_request(headers: Mapping[str, str], body: bytes) -> bool:
    """Whether a :predict body carries pictures (multipart files, or base64 instances) rather than rows."""
    return headers.get("content-type", "").startswith("multipart/form-data") or b'"b64"' in body


def decode_pictures(pictures: list[tuple[str, bytes]], contract: DecodeTarget, max_pixels: int) -> np.ndarray:
    """Encoded pictures → the model's input: float32 pixels (N, H, W, C); BadRequest naming a bad one."""
    from fermion.imaging import ImageError, decode

    if not pictures:
        raise BadRequest("no pictures in the request")
    if len(pictures) > MAX_PICTURES:
        raise BadRequest(f"{len(pictures)} pictures in one request; the limit is {MAX_PICTURES}")
    out = np.empty((len(pictures), contract.height, contract.width, contract.channels), np.float32)
    for i, (name, data) in enumerate(pictures):
        try:
            out[i] = decode(data, contract, max_pixels)
        except ImageError as exc:
            raise BadRequest(f"picture {name}: {exc}") from exc
    return out


async def decode_async(pictures: list[tuple[str, bytes]], contract: DecodeTarget, max_pixels: int) -> np.ndarray:
    """`decode_pictures`, in a worker thread unless the pictures are small enough to decode inline."""
    if sum(len(data) for _, data in pictures) <= INLINE_BYTES:
        return decode_pictures(pictures, contract, max_pixels)
    return await asyncio.to_thread(decode_pictures, pictures, contract, max_pixels)


class PictureRequest:
    """`:predict` on pictures: parsed once the model is known (a model on features says so first)."""

    variant: str | None = None  # the runtime's choice
    wanted: list[str] | None = None  # every output

    def __init__(self, body: bytes, headers: Mapping[str, str], max_pixels: int) -> None:
        self.body, self.headers, self.max_pixels = body, headers, max_pixels
        self.request_id = headers.get("fermion-request-id")
        self.names: list[str] = []

    async def feeds(self, model: LoadedModel) -> dict[str, np.ndarray]:
        """The pictures decoded by the model's image contract, as its one input."""
        contract = contract_of(model)
        if contract is None:
            raise BadRequest(f"model {model.name} was not trained on pictures; send rows: {{'instances': [[...]]}}")
        if len(model.inputs) != 1:
            raise BadRequest(f"model {model.name} has {len(model.inputs)} inputs; use the v2 infer route")
        if self.headers.get("content-type", "").startswith("multipart/form-data"):
            pictures = await _multipart(Headers(self.headers), self.body)
        else:
            pictures = _base64_instances(self.body)
        self.names = [name for name, _ in pictures]
        return {next(iter(model.inputs)): await decode_async(pictures, contract, self.max_pixels)}

    def encode(self, model: LoadedModel, results: dict[str, np.ndarray], headers: dict[str, str]) -> Answer:
        """Each picture's label, class index and probabilities, as JSON."""
        (logits,) = results.values()
        return Answer.json(answer(model, logits, self.names), headers)


def answer(model: LoadedModel, logits: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Each picture's predicted label, class index and the probabilities of every class."""
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities = shifted / shifted.sum(axis=1, keepdims=True)
    labels = model.manifest.labels or [str(i) for i in range(logits.shape[1])]
    predictions = []
    for name, p in zip(names, probabilities, strict=True):
        best = int(p.argmax())
        predictions.append(
            {
                "name": name,
                "label": labels[best],
                "index": best,
                "probability": float(p[best]),
                "probabilities": {label: float(v) for label, v in zip(labels, p, strict=True)},
            }
        )
    return {
        "model_name": model.name,
        "model_version": str(model.version),
        "labels": [p["label"] for p in predictions],
        "predictions": predictions,
    }


async def _multipart(headers: Headers, body: bytes) -> list[tuple[str, bytes]]:
    async def once() -> AsyncGenerator[bytes, None]:
        yield body

    try:
        form = await MultiPartParser(headers, once(), max_files=MAX_PICTURES, max_fields=16).parse()
    except MultiPartException as exc:
        raise BadRequest(f"malformed multipart body: {exc.message}") from exc
    pictures: list[tuple[str, bytes]] = []
    for key, value in form.multi_items():
        if isinstance(value, UploadFile):
            pictures.append((value.filename or f"{key}[{len(pictures)}]", await value.read()))
    await form.close()
    if not pictures:
        raise BadRequest("the multipart body holds no files: send each picture as a file part")
    return pictures


def _base64_instances(body: bytes) -> list[tuple[str, bytes]]:
    try:
        instances = json.loads(body)["instances"]
    except (ValueError, KeyError, TypeError) as exc:
        raise BadRequest('send pictures as {"instances": [{"b64": "<base64 PNG or JPEG>"}, ...]}') from exc
    if not isinstance(instances, list):
        raise BadRequest("instances must be a list")
    pictures = []
    for i, item in enumerate(instances):
        if not isinstance(item, dict) or not isinstance(item.get("b64"), str):
            raise BadRequest(f'instances[{i}] must be {{"b64": "<base64 PNG or JPEG>"}}')
        pictures.append((str(item.get("name", f"instances[{i}]")), unbase64(item["b64"], f"instances[{i}]")))
    return pictures


async def decode_feeds(feeds: dict[str, np.ndarray], model: LoadedModel, max_pixels: int) -> dict[str, np.ndarray]:
    """OIP v2 feeds with BYTES inputs (encoded pictures, shape [N] or [N, 1]) decoded to the model's pixels."""
    contract = contract_of(model)
    if contract is None:
        raise BadRequest(f"model {model.name} was not trained on pictures; BYTES inputs are encoded pictures")
    decoded = {}
    for name, array in feeds.items():
        if array.dtype != object:
            decoded[name] = array
            continue
        if array.ndim not in (1, 2) or (array.ndim == 2 and array.shape[1] != 1):
            raise BadRequest(f"input {name!r}: BYTES pictures need shape [N] or [N, 1]; got {list(array.shape)}")
        pictures = [(f"{name}[{i}]", bytes(b)) for i, b in enumerate(array.ravel())]
        decoded[name] = await decode_async(pictures, contract, max_pixels)
    return decoded
