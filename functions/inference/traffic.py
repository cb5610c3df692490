"""Per-version stats, input samples and labelled-able predictions, reported on NATS off the request path.

The request path only counts and enqueues into bounded buffers (a dictionary update, a random
draw, a deque append); a background task on the same event loop, started by the first request,
swaps the buffers out every `telemetry_interval_s`, converts them in a worker thread and sends one
`TelemetryBatch` on core NATS. The NATS connection (and the import of nats-py) happens in that
task, never before a request is answered. Without `FERMION_NATS_URL` nothing is collected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from .settings import InferenceSettings

if TYPE_CHECKING:
    from fermion.events import Bus
    from fermion.events.traffic import TelemetryBatch

    from .runtime import LoadedModel, ModelRef

log = logging.getLogger("fermion.inference")
MAX_MESSAGE = 512 * 1024  # bytes per telemetry message (NATS refuses over 1 MiB by default)
SAMPLE_MAX_ELEMENTS = 65_536  # larger requests are never sampled (one would outgrow a message)
LATENCY_CAP = 1024  # latencies kept per version per interval (a uniform reservoir beyond)
ANSWERS = ("probabilities", "logits", "prediction")  # the outputs a prediction is read from, in preference
Fed = np.ndarray | dict[str, np.ndarray]  # one input tensor, or a table model's columns by name
Features = dict[str, Any] | None  # a table model's feature schema (its manifest's `features`)
Sampled = tuple[str, str, int, Fed, np.ndarray, Features]
Predicted = tuple[str, str, int, str, np.ndarray, Features]


class Routed(Protocol):
    """What telemetry and the shadow read of a request's route (`routing.Route`, which uses them)."""

    ref: ModelRef
    tenant: str
    alias: str | None
    shadow: int | None
    version: int | None


@dataclass
class Counter:
    """One version's requests in the current interval."""

    requests: int = 0
    errors: int = 0
    latency_ms: list[float] = field(default_factory=list)

    def add(self, ms: float, error: bool) -> None:
        """Count one request (reservoir-sampling its latency past the cap)."""
        self.requests += 1
        self.errors += error
        if len(self.latency_ms) < LATENCY_CAP:
            self.latency_ms.append(ms)
        elif (slot := random.randrange(self.requests)) < LATENCY_CAP:
            self.latency_ms[slot] = ms


@dataclass
class ShadowCounter:
    """One primary/shadow pair's comparisons in the current interval."""

    compared: int = 0
    agreed: int = 0
    errors: int = 0
    primary_ms: list[float] = field(default_factory=list)
    shadow_ms: list[float] = field(default_factory=list)


class Telemetry:
    """Buffers filled by requests, drained onto NATS by one background task."""

    def __init__(self, settings: Callable[[], InferenceSettings]) -> None:
        self._settings = settings
        self._stats: dict[tuple[str, str, str | None, int], Counter] = {}
        self._shadows: dict[tuple[str, str, str, int, int], ShadowCounter] = {}
        self._shadow_lock = threading.Lock()
        self._samples: deque[Sampled] = deque()
        self._sampled_rows = 0
        self._predictions: deque[Predicted] = deque(maxlen=10_000)
        self._task: asyncio.Task[None] | None = None
        self._bus: Bus | None = None
        self._started = False
        self._source = ""
        self.enabled = False
        self.sent = 0
        """Batches sent so far (tests and the health route read it)."""

    def start(self) -> None:
        """Start the flushing task on the running loop, once (no-op without a NATS URL)."""
        if self._started:
            return
        self._started = True
        self._source = f"{socket.gethostname()}:{os.getpid()}"  # this replica, in every batch it sends
        settings = self._settings()
        self.enabled = settings.nats_url is not None
        if self.enabled:
            self._task = asyncio.get_running_loop().create_task(self._run(settings))

    def observe(self, route: Routed, seconds: float, *, error: bool) -> None:
        """Count a request for the version that answered it (the request path: O(1))."""
        if not self.enabled or route.version is None:
            return
        key = (route.tenant, route.ref.name, route.alias, route.version)
        counter = self._stats.get(key)
        if counter is None:
            counter = self._stats[key] = Counter()
        counter.add(seconds * 1000, error)

    def sample(
        self, model: LoadedModel, feeds: dict[str, np.ndarray], results: dict[str, np.ndarray], request_id: str | None
    ) -> None:
        """Keep references to a request's inputs and output, at the sample rate, up to the cap.

        A table model's columns are kept as fed (one array per column) with its feature schema: the
        batch's worker thread turns them into the profile's values (`column_values`), off the request.
        """
        m = model.manifest
        if not self.enabled or not results or (len(feeds) != 1 and m.features is None):
            return
        output = _answer(results)
        if request_id:
            self._predictions.append((m.tenant, m.name, m.version, request_id, output, m.features))
        settings = self._settings()
        x: Fed = feeds if m.features is not None else next(iter(feeds.values()))
        rows = len(output)
        if (
            self._sampled_rows < settings.sample_max_rows
            and sum(a.size for a in feeds.values()) <= SAMPLE_MAX_ELEMENTS
            and random.random() < settings.sample_rate
        ):
            self._sampled_rows += rows
            self._samples.append((m.tenant, m.name, m.version, x, output, m.features))

    def shadowed(
        self, key: tuple[str, str, str, int, int], primary_s: float, shadow_s: float | None, agreed: bool
    ) -> None:
        """Record one shadow comparison (`shadow_s` None: the shadow failed); called from the shadow thread."""
        with self._shadow_lock:
            counter = self._shadows.get(key)
            if counter is None:
                counter = self._shadows[key] = ShadowCounter()
            counter.compared += 1
            if shadow_s is None:
                counter.errors += 1
                return
            counter.agreed += agreed
            if len(counter.primary_ms) < LATENCY_CAP:
                counter.primary_ms.append(primary_s * 1000)
                counter.shadow_ms.append(shadow_s * 1000)

    async def _run(self, settings: InferenceSettings) -> None:
        """Every interval: the buffers out onto NATS."""
        while True:
            await asyncio.sleep(settings.telemetry_interval_s)
            await self._flush(settings)

    async def close(self) -> None:
        """At shutdown: the flushing task stops, what the buffers hold since its last interval goes out,
        then the connection closes."""
        if self._task is None:
            return
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._task = None
        await self._flush(self._settings())
        if self._bus is not None:
            bus, self._bus = self._bus, None
            await bus.close()

    async def _flush(self, settings: InferenceSettings) -> None:
        """Swap the buffers out, build the batch in a thread, send it."""
        stats, self._stats = self._stats, {}
        with self._shadow_lock:
            shadows, self._shadows = self._shadows, {}
        samples, self._samples, self._sampled_rows = self._samples, deque(), 0
        predictions = list(self._predictions)
        self._predictions.clear()
        if not (stats or shadows or samples or predictions):
            return
        try:
            messages = await asyncio.to_thread(_encode, self._source, stats, shadows, samples, predictions)
        except ValueError as exc:  # a batch that cannot be encoded is dropped, never the task
            log.warning("telemetry batch dropped: %s", exc)
            return
        for data in messages:
            await self._send(settings, data)

    async def _send(self, settings: InferenceSettings, data: bytes) -> None:
        from fermion.events import Bus, BusError, subjects  # here, not at import: nats-py stays off cold start

        try:
            if self._bus is None:
                assert settings.nats_url is not None
                self._bus = await Bus.from_settings(settings, name="fermion-inference", timeout_s=2.0)
            await self._bus.send(subjects.TELEMETRY, data)
            self.sent += 1
        except BusError as exc:
            log.warning("telemetry dropped (%d bytes): %s", len(data), exc)


def _encode(
    source: str,
    stats: dict[tuple[str, str, str | None, int], Counter],
    shadows: dict[tuple[str, str, str, int, int], ShadowCounter],
    samples: deque[Sampled],
    predictions: list[Predicted],
) -> list[bytes]:
    """The batch as JSON (a worker thread: numpy to lists, arg-max of predictions)."""
    from fermion.events.traffic import Prediction, Sample, ShadowStats, TelemetryBatch, VersionStats
    from fermion.model_store.features import FeatureSchema
    from fermion.model_store.profiles import column_values

    schemas: dict[str, FeatureSchema] = {}

    def classes(out: np.ndarray, features: Features) -> list[int]:
        if _regression(features):  # a value, not a class: the ledger counts classes
            return []
        return [int(c) for c in (out.argmax(axis=1) if out.ndim == 2 else np.zeros(len(out), dtype=int))]

    def sample(t: str, n: str, v: int, x: Fed, out: np.ndarray, features: Features) -> Sample:
        if isinstance(x, dict):
            key = f"{t}/{n}/{v}"
            schema = schemas.get(key) or schemas.setdefault(key, FeatureSchema.model_validate(features))
            x = column_values(schema, {name: a.reshape(-1) for name, a in x.items()})
        if _regression(features):
            return Sample.of(t, n, v, x, [], values=[float(p) for p in out.reshape(len(out), -1)[:, 0]])
        return Sample.of(t, n, v, x, classes(out, features))

    batch = TelemetryBatch(
        source=source,
        stats=[
            VersionStats(
                tenant=t, name=n, alias=a, version=v, requests=c.requests, errors=c.errors, latency_ms=c.latency_ms
            )
            for (t, n, a, v), c in stats.items()
        ],
        shadows=[
            ShadowStats(tenant=t, name=n, alias=a, primary=p, shadow=s, **vars(c))
            for (t, n, a, p, s), c in shadows.items()
        ],
        samples=[sample(*entry) for entry in samples],
        predictions=[
            Prediction(tenant=t, name=n, version=v, request_id=rid if len(out) == 1 else f"{rid}/{i}", predicted=p)
            for t, n, v, rid, out, features in predictions
            for i, p in enumerate(classes(out, features))
        ],
    )
    return _chunks(batch)


def _answer(results: dict[str, np.ndarray]) -> np.ndarray:
    """The output a prediction is read from: probabilities, logits or a regression's value; else the first."""
    for name in ANSWERS:
        if name in results:
            return results[name]
    return next(iter(results.values()))


def _regression(features: Features) -> bool:
    return features is not None and features.get("task") == "regression"


def _chunks(batch: TelemetryBatch) -> list[bytes]:
    """The batch as messages under NATS's payload limit: samples split across as many as needed."""
    from fermion.events.traffic import TelemetryBatch

    whole = batch.model_dump_json().encode()
    if len(whole) <= MAX_MESSAGE or len(batch.samples) < 2:
        return [whole]
    half = len(batch.samples) // 2
    first = batch.model_copy(update={"samples": batch.samples[:half]})
    rest = TelemetryBatch(source=batch.source, samples=batch.samples[half:])
    return _chunks(first) + _chunks(rest)
