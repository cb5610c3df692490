"""The inference function's metrics (documented in docs/metrics.md).

The warm path pays for a few direct `observe`/`inc` calls on label series cached per model (`tally`'s
counters and histograms, a fraction of prometheus-client's cost per update), nothing else: what
describes the loaded sessions (count, bytes, providers, GPU fallback) is read from the runtime at
scrape time by `LoadedModelsCollector`.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from .exposition import LATENCY_BUCKETS, ROWS_BUCKETS, SLOW_BUCKETS, process_started
from .tally import Counting, Histogramming, in_process


class Session(Protocol):
    """What the collector reads of a loaded model (`runtime.LoadedModel`)."""

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> int: ...

    providers: list[str]
    gpu_fallback: bool
    size: int
    variant: str


class InferenceMetrics:
    """Every inference series, on one registry."""

    def __init__(
        self,
        registry: CollectorRegistry,
        loaded: Callable[[], Iterable[Session]] | None = None,
    ) -> None:
        self.registry = registry
        # The warm path's families are `tally`'s (the same exposition, about half the cost per update),
        # except in prometheus-client's multiprocess mode, where only its own are summed across workers.
        fast_counter: Any = Counting if in_process() else Counter
        fast_histogram: Any = Histogramming if in_process() else Histogram
        self.requests = fast_counter(
            "fermion_inference_requests",
            "Inference requests (infer, :predict) answered, by model, version, alias asked for and HTTP status.",
            ["model", "version", "alias", "status"],
            registry=registry,
        )
        self.refused = Counter(
            "fermion_inference_refused_requests",
            "Inference requests refused, by reason (the error class: Unauthorized, BadRequest, SignatureError, ...).",
            ["reason", "status"],
            registry=registry,
        )
        self.latency = fast_histogram(
            "fermion_inference_request_duration_seconds",
            "Inference request time in the app, from routing to the response body, by model and version answering.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.queue = fast_histogram(
            "fermion_inference_queue_duration_seconds",
            "Time a request waited for its run (in a batch queue; 0 when it ran inline).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.compute = fast_histogram(
            "fermion_inference_compute_duration_seconds",
            "ONNX Runtime session.run time per run (a merged batch is one run).",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.batch = fast_histogram(
            "fermion_inference_batch_size_rows",
            "Rows per session run (1 request alone, or a merged batch).",
            ["model"],
            buckets=ROWS_BUCKETS,
            registry=registry,
        )
        self.rows = fast_counter("fermion_inference_rows", "Rows inferred, by model.", ["model"], registry=registry)
        self.load = Histogram(
            "fermion_inference_model_load_duration_seconds",
            "Time to fetch, verify and open a model version in ONNX Runtime.",
            ["model"],
            buckets=SLOW_BUCKETS,
            registry=registry,
        )
        self.load_failures = Counter(
            "fermion_inference_model_load_failures",
            "Model loads that failed, by reason (the error class).",
            ["reason"],
            registry=registry,
        )
        self.cold_start = Gauge(
            "fermion_inference_cold_start_seconds",
            "From the process's start to its first infer response.",
            registry=registry,
        )
        self._first = True
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self._children: dict[tuple[str, ...], Any] = {}
        if loaded is not None:
            registry.register(LoadedModelsCollector(loaded))

    def answered(self, model: str, version: int, alias: str, started: float) -> None:
        """A 200 for `model`: the request count and its latency (the warm path's only calls)."""
        key = (model, str(version), alias)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.requests.labels(model, str(version), alias, "200"),
                self.latency.labels(model, str(version)),  # per version: a canary's p99 beside its incumbent's
            )
        seconds = time.perf_counter() - started
        children[0].inc()
        children[1].observe(seconds)
        if self._first:
            self._first = False
            self.cold_start.set(time.time() - process_started())

    def refused_request(self, reason: str, status: int, model: str = "", version: int | None = None) -> None:
        """A request answered with an error: by reason, and in the request count with its status."""
        self.refused.labels(reason, str(status)).inc()
        self.requests.labels(model, "" if version is None else str(version), "", str(status)).inc()

    def ran(self, model: str, rows: int, compute_s: float, waits: Iterable[float] = (0.0,)) -> None:
        """One session run of `rows` rows; `waits`: how long each request in it waited for the run."""
        key = ("run", model)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                self.batch.labels(model),
                self.compute.labels(model),
                self.rows.labels(model),
                self.queue.labels(model),
            )
        children[0].observe(rows)
        children[1].observe(compute_s)
        children[2].inc(rows)
        for wait in waits:
            children[3].observe(wait)

    def loaded(self, model: Session, seconds: float) -> None:
        """A session handed out by a cold path: its load time, once per session."""
        if model not in self._seen:
            self._seen.add(model)
            self.load.labels(model.name).observe(seconds)

    def load_failed(self, reason: str) -> None:
        """A model version failed to load."""
        self.load_failures.labels(reason).inc()


class LoadedModelsCollector(Collector):
    """Loaded sessions, read from the runtime at scrape time (nothing on the request path)."""

    def __init__(self, loaded: Callable[[], Iterable[Session]]) -> None:
        self._loaded = loaded

    def describe(self) -> list[GaugeMetricFamily]:
        """Nothing to check at registration (which must not touch the runtime: it may not exist yet)."""
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        models = list(self._loaded())
        yield GaugeMetricFamily("fermion_inference_models_loaded", "Model sessions loaded.", value=len(models))
        yield GaugeMetricFamily(
            "fermion_inference_models_loaded_bytes",
            "File bytes of the loaded models.",
            value=sum(m.size for m in models),
        )
        providers = GaugeMetricFamily(
            "fermion_inference_model_provider_info",
            "1 for each execution provider a loaded session really got (session.get_providers()).",
            labels=["model", "version", "variant", "provider"],
        )
        fallback = GaugeMetricFamily(
            "fermion_inference_gpu_fallback",
            "1 when a loaded session asked for a GPU provider and got only the CPU.",
            labels=["model", "version", "variant"],
        )
        for m in models:
            for p in m.providers:
                providers.add_metric([m.name, str(m.version), m.variant, p], 1)
            fallback.add_metric([m.name, str(m.version), m.variant], float(m.gpu_fallback))
        yield providers
        yield fallback


def inference_metrics(loaded: Callable[[], Iterable[Session]]) -> InferenceMetrics:
    """An inference app's metrics, on a registry of their own."""
    return InferenceMetrics(CollectorRegistry(auto_describe=True), loaded)
