"""What inference functions report about their traffic, on core NATS (`fermion.telemetry`).

Not stored: a lost batch loses a sample, never a decision. One batch per function per flush
interval carries per-version request stats, a bounded sample of inputs and predictions, the
predictions made under client-given request ids (so labels can be joined later), and shadow
comparisons.
"""

from __future__ import annotations

import base64

import numpy as np
from pydantic import BaseModel, ConfigDict


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class VersionStats(_Part):
    """One version's requests in one interval, as routed through `alias` (None: asked by version)."""

    tenant: str
    name: str
    alias: str | None
    version: int
    requests: int
    errors: int
    latency_ms: list[float]
    """Per-request latencies (all of them, or a uniform sample when there were more than the cap)."""


class Sample(_Part):
    """Inputs a version was asked about, and the class it predicted for each row (a regression: the value)."""

    tenant: str
    name: str
    version: int
    features: int
    rows_f32: str
    """The rows, row-major little-endian float32, base64 (a fifth of the size of JSON numbers)."""
    predictions: list[int]
    values: list[float] = []
    """A regression's predicted values, one per row (its `predictions` are empty)."""

    @classmethod
    def of(
        cls,
        tenant: str,
        name: str,
        version: int,
        rows: np.ndarray,
        predictions: list[int],
        values: list[float] | None = None,
    ) -> Sample:
        """From a rows-by-features array (a table's: `model_store.profiles.column_values`)."""
        rows = np.ascontiguousarray(rows.reshape(len(rows), -1), dtype="<f4")
        data = base64.b64encode(rows.tobytes()).decode()
        return cls(
            tenant=tenant,
            name=name,
            version=version,
            features=rows.shape[1],
            rows_f32=data,
            predictions=predictions,
            values=values or [],
        )

    def rows(self) -> np.ndarray:
        """The rows as a rows-by-features float64 array (ValueError if the payload is inconsistent)."""
        flat = np.frombuffer(base64.b64decode(self.rows_f32, validate=True), dtype="<f4")
        return flat.reshape(-1, self.features).astype(np.float64)


class Prediction(_Part):
    """The class a version predicted under a client-given request id."""

    tenant: str
    name: str
    version: int
    request_id: str
    predicted: int


class ShadowStats(_Part):
    """How a shadow version's answers compared with the primary's in one interval."""

    tenant: str
    name: str
    alias: str
    primary: int
    shadow: int
    compared: int
    agreed: int
    errors: int
    primary_ms: list[float]
    shadow_ms: list[float]


class TelemetryBatch(_Part):
    """One inference function's report for one interval."""

    source: str
    stats: list[VersionStats] = []
    samples: list[Sample] = []
    predictions: list[Prediction] = []
    shadows: list[ShadowStats] = []
