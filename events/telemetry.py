"""What inference functions report about their traffic, on core NATS (`fermion.telemetry`).

Not stored: a lost batch loses a sample, never a decision. One batch per function per flush
interval carries per-version request stats, a bounded sample of inputs and predictions, the
predictions made under client-given request ids (so labels can be joined later), and shadow
comparisons.
"""

from __future__ import annotations

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
    """Inputs a version was asked about, and the class it predicted for each row."""

    tenant: str
    name: str
    version: int
    rows: list[list[float]]
    predictions: list[int]


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
