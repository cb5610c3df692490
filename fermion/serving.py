"""The client's methods for the inference function: metadata, OIP v2 tensors, `:predict` on rows and pictures.

`Client` (client.py) inherits them; they make their requests through its `_call`, so they share its
connection, key and error translation.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


class Serving:
    """Predictions over the inference function's HTTP API."""

    inference_url: str

    def _call(self, method: str, url: str, *, key: str | None = None, **kwargs: Any) -> Any:
        raise NotImplementedError  # Client's

    def metadata(self, model: str) -> dict[str, Any]:
        """The model's Open Inference Protocol metadata (inputs, outputs, providers, labels, feature schema)."""
        return dict(self._call("GET", f"{self.inference_url}/v2/models/{_oip_path(model)}"))

    def predict_rows(
        self, model: str, rows: list[Any], *, per_request: int = 1000, max_request_bytes: int = 4 << 20
    ) -> dict[str, Any]:
        """Send rows to `:predict` (objects by column or input name, or lists), a few per request; the answers joined.

        `predictions` (class names, or values in the label's units), and for a classifier `probabilities`
        per row in the order of `classes`: what the server answers, for every row at once.
        """
        url = f"{self.inference_url}/v1/models/{_oip_path(model)}:predict"
        joined: dict[str, Any] = {}
        start = 0
        while start < len(rows):
            body, taken = _body(rows[start : start + per_request], max_request_bytes)
            start += taken
            answer = self._call("POST", url, content=body, headers={"Content-Type": "application/json"})
            if not joined:
                joined = answer
                continue
            joined["predictions"] += answer["predictions"]
            if "probabilities" in answer:
                joined["probabilities"] += answer["probabilities"]
        return joined

    def predict_pictures(
        self, model: str, pictures: list[Path], *, per_request: int = 64, max_request_bytes: int = 4 << 20
    ) -> list[dict[str, Any]]:
        """Send PNG/JPEG files to `:predict` (a few per request); each one's label and probabilities, in order."""
        results: list[dict[str, Any]] = []
        batch: list[Path] = []
        size = 0
        for path in [*pictures, None]:
            length = path.stat().st_size if path is not None else 0
            if batch and (path is None or len(batch) >= per_request or size + length > max_request_bytes):
                files = [("files", (p.name, p.read_bytes())) for p in batch]
                url = f"{self.inference_url}/v1/models/{_oip_path(model)}:predict"
                answer = self._call("POST", url, files=files)
                results.extend(answer["predictions"])
                batch, size = [], 0
            if path is not None:
                batch.append(path)
                size += length
        return results

    def predict(self, model: str, x: np.ndarray, *, input_name: str = "input") -> np.ndarray:
        """Run `x` (rows of float32 features) through the served model; returns the first output."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        body = {
            "inputs": [{"name": input_name, "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}]
        }
        url = f"{self.inference_url}/v2/models/{_oip_path(model)}/infer"
        out = self._call("POST", url, json=body)["outputs"][0]
        return np.asarray(out["data"], dtype=np.float32).reshape(out["shape"])


def _oip_path(model: str) -> str:
    """NAME, NAME@ALIAS or NAME:VERSION as the Open Inference Protocol's path (NAME/versions/VERSION)."""
    name, sep, version = model.partition(":")
    return f"{name}/versions/{version}" if sep else model


def _body(rows: list[Any], max_bytes: int) -> tuple[bytes, int]:
    """The `:predict` body of the first of `rows` that fit in `max_bytes` (at least one), and how many it took."""
    while True:
        # JSON has no NaN: a missing number is a blank (null), which a table model imputes.
        body = json.dumps({"instances": _blank_nans(rows)}, default=_plain).encode()
        if len(body) <= max_bytes or len(rows) == 1:
            return body, len(rows)
        rows = rows[: len(rows) // 2]


def _plain(value: Any) -> Any:
    """A value JSON does not know: a numpy scalar as its Python value, anything else (a date) as text."""
    return value.item() if isinstance(value, np.generic) else str(value)


def _blank_nans(value: Any) -> Any:
    """`value` with every float NaN (a blank cell as pyarrow or numpy reads it) as None."""
    if isinstance(value, float | np.floating):
        return None if math.isnan(value) else value
    if isinstance(value, dict):
        return {k: _blank_nans(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_blank_nans(v) for v in value]
    return value
