"""How the inference function counts its answers, and when its metrics are built.

- Metrics off (`FERMION_METRICS=0`): nothing.
- In a container: `InferenceMetrics` on a Prometheus registry, built once the first answer has gone
  out (`AfterFirstAnswer`). Building them imports prometheus-client, ~13 ms of a cold start that the
  first answer does not need (bench/cold_imports.py); until then each count is held, and replayed
  into the metrics when they are built, with the time it measured. Any other request that comes
  first (a probe, a scrape, metadata) builds them then, with the framework that serves it.
- Under Lambda (`AWS_LAMBDA_FUNCTION_NAME`): each answer and refusal as a CloudWatch EMF line on
  stdout (`EmfCounts`), and no Prometheus registry: nothing scrapes a Lambda, and its init phase
  would pay for the import.

The pipeline, the scheduler and the model loads call the same five methods (`Counts`) on any of them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Protocol

from fermion.service.observability.emf import Emf
from fermion.service.observability.exposition import process_started

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from fermion.service.observability.inference import InferenceMetrics, Session


class Counts(Protocol):
    """What the inference function counts (documented in docs/metrics.md)."""

    def answered(self, model: str, version: int, alias: str, started: float) -> None: ...
    def refused_request(self, reason: str, status: int, model: str = "", version: int | None = None) -> None: ...
    def ran(self, model: str, rows: int, compute_s: float, waits: Iterable[float] = (0.0,)) -> None: ...
    def loaded(self, model: Session, seconds: float) -> None: ...
    def load_failed(self, reason: str) -> None: ...

    @property
    def registry(self) -> CollectorRegistry | None:
        """The Prometheus registry `/metrics` serves (None: no `/metrics`)."""
        ...


log = logging.getLogger("fermion.inference")
_METHODS = ("answered", "refused_request", "ran", "loaded", "load_failed")


class AfterFirstAnswer:
    """`InferenceMetrics`, built by `build()` once the first answer is out; counts before it are held."""

    def __init__(self, make: Callable[[], InferenceMetrics]) -> None:
        self._make = make
        self._metrics: InferenceMetrics | None = None
        self._held: list[tuple[str, tuple[Any, ...]]] = []
        self._first_answer: float | None = None  # Unix time of the first answer, for the cold-start gauge
        self._failed = False
        self._lock = threading.Lock()  # batched runs count from worker threads

    def build(self) -> InferenceMetrics | None:
        """The metrics, built now if they are not yet, with every held count replayed into them.

        None if they could not be built: that is logged once, and nothing is counted from then on
        (the function goes on answering; its `/metrics` and readiness gauge are absent)."""
        with self._lock:
            if self._metrics is None and not self._failed:
                try:
                    metrics = self._make()
                    self._replay(metrics)
                except Exception:
                    log.exception("the inference metrics could not be built: nothing is counted from now on")
                    self._failed = True
                    self._held.clear()
                    return None
                for name in _METHODS:  # from now on each call goes straight to the metrics
                    setattr(self, name, getattr(metrics, name))
                self._metrics = metrics
            return self._metrics

    def _replay(self, metrics: InferenceMetrics) -> None:
        for name, args in self._held:
            _count(metrics, name, args)
        if self._first_answer is not None:  # the replay set it a moment late
            metrics.cold_start.set(self._first_answer - process_started())
        self._held.clear()

    @property
    def registry(self) -> CollectorRegistry | None:
        metrics = self.build()
        return metrics.registry if metrics is not None else None

    def answered(self, model: str, version: int, alias: str, started: float) -> None:
        took = time.perf_counter() - started
        if self._first_answer is None:
            self._first_answer = time.time()
        self._hold("answered", (model, version, alias, took))

    def refused_request(self, reason: str, status: int, model: str = "", version: int | None = None) -> None:
        self._hold("refused_request", (reason, status, model, version))

    def ran(self, model: str, rows: int, compute_s: float, waits: Iterable[float] = (0.0,)) -> None:
        self._hold("ran", (model, rows, compute_s, tuple(waits)))

    def loaded(self, model: Session, seconds: float) -> None:
        self._hold("loaded", (model, seconds))

    def load_failed(self, reason: str) -> None:
        self._hold("load_failed", (reason,))

    def _hold(self, name: str, args: tuple[Any, ...]) -> None:
        if self._metrics is None:
            with self._lock:
                if self._failed:
                    return
                if self._metrics is None:
                    self._held.append((name, args))
                    return
        _count(self._metrics, name, args)  # built since this call began (a caller kept the bound method)


def _count(metrics: InferenceMetrics, name: str, args: tuple[Any, ...]) -> None:
    """One held count into the metrics; an answer is held with the time it took, not when it began."""
    if name == "answered":
        model, version, alias, took = args
        metrics.answered(model, version, alias, time.perf_counter() - took)
    else:
        getattr(metrics, name)(*args)


class EmfCounts:
    """Under Lambda: each answer and refusal as one CloudWatch EMF line (see the module's docstring)."""

    registry = None

    def __init__(self, emf: Emf) -> None:
        self.emf = emf

    def answered(self, model: str, version: int, alias: str, started: float) -> None:
        seconds = time.perf_counter() - started
        self.emf.emit({"Model": model}, {"Requests": (1, "Count"), "Latency": (seconds * 1000, "Milliseconds")})

    def refused_request(self, reason: str, status: int, model: str = "", version: int | None = None) -> None:
        self.emf.emit({"Reason": reason}, {"Refused": (1, "Count")})

    def ran(self, model: str, rows: int, compute_s: float, waits: Iterable[float] = (0.0,)) -> None:
        """Not sent: per-run figures are the container's (a Lambda runs one request per invocation)."""

    def loaded(self, model: Session, seconds: float) -> None:
        """Not sent: a Lambda's load is its init phase, which Lambda reports itself."""

    def load_failed(self, reason: str) -> None:
        """Not sent: the refusal that follows is counted (its reason names the failure)."""
