"""Counters and histograms for the inference warm path, exposed as prometheus-client's own are.

prometheus-client's `Histogram.observe` takes a lock for each value it touches and walks the
buckets in a Python loop; an inference answer makes four observations and two increments. These keep
plain numbers under one lock per series and find the bucket by bisection: about half the cost per
update (`bench/metrics_cost.py`: 0.31 against 0.66 µs an observation, 0.22 against 0.35 an increment,
in a loop). prometheus-client still does the rest: each family is a collector on its registry, and a
scrape gets the same names, types, labels, buckets and `_total`, `_bucket`, `_count`, `_sum` and
`_created` samples a `Counter` or `Histogram` would give. Under prometheus-client's multiprocess
mode (`in_process()` is false) the inference metrics are prometheus-client's own instead.
"""

from __future__ import annotations

import math
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from typing import Generic, TypeVar

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString


def in_process() -> bool:
    """Whether prometheus-client keeps its values in this process. Not in its multiprocess mode
    (`PROMETHEUS_MULTIPROC_DIR`: several workers each write their samples to files, which a scrape
    sums): these families could not be summed there, so prometheus-client's own must be used."""
    from prometheus_client import values

    return values.ValueClass is values.MutexValue


# prometheus-client's own switch for the `_created` series.
CREATED = os.environ.get("PROMETHEUS_DISABLE_CREATED_SERIES", "False").lower() not in ("true", "1", "t")


class CounterSeries:
    """One label set's count."""

    __slots__ = ("_lock", "created", "value")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0.0
        self.created = time.time()

    def inc(self, amount: float = 1) -> None:
        if amount < 0:
            raise ValueError("a counter only goes up")
        with self._lock:
            self.value += amount


class HistogramSeries:
    """One label set's observations: a count per bucket (not cumulative) and their sum."""

    __slots__ = ("_bounds", "_lock", "counts", "created", "total")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self._lock = threading.Lock()
        self._bounds = bounds  # ending with +Inf
        self.counts = [0] * len(bounds)
        self.total = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        index = bisect_left(self._bounds, value)  # the first bucket whose bound is >= value (`le`)
        with self._lock:
            if value == value:  # NaN is in no bucket, only in the sum (as prometheus-client has it)
                self.counts[index] += 1
            self.total += value

    def reading(self) -> tuple[list[int], float]:
        """The counts and their sum, read together (a scrape never sees one without the other)."""
        with self._lock:
            return list(self.counts), self.total


S = TypeVar("S", CounterSeries, HistogramSeries)


class _Family(Collector, Generic[S]):
    """A family of series by label values, registered on `registry` as a collector."""

    def __init__(
        self, name: str, documentation: str, labelnames: Sequence[str], *, registry: CollectorRegistry
    ) -> None:
        self.name, self.documentation, self.labelnames = name, documentation, tuple(labelnames)
        self._lock = threading.Lock()
        self._series: dict[tuple[str, ...], S] = {}
        registry.register(self)

    def labels(self, *values: object) -> S:
        """The series of these label values (made on first use)."""
        if len(values) != len(self.labelnames):
            raise ValueError(f"{self.name}: {len(self.labelnames)} label values expected, got {len(values)}")
        key = tuple(str(v) for v in values)
        series = self._series.get(key)
        if series is None:
            with self._lock:
                series = self._series.setdefault(key, self._new())
        return series

    def _new(self) -> S:
        raise NotImplementedError

    def _family(self) -> Metric:
        raise NotImplementedError

    def describe(self) -> list[Metric]:
        return [self._family()]  # the names the registry checks for duplicates, no samples

    def _all(self) -> list[tuple[tuple[str, ...], S]]:
        with self._lock:
            return list(self._series.items())


class Counting(_Family[CounterSeries]):
    """prometheus-client's `Counter`, for the warm path."""

    def _new(self) -> CounterSeries:
        return CounterSeries()

    def _family(self) -> CounterMetricFamily:
        return CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for labels, series in self._all():
            family.add_metric(labels, series.value, created=series.created if CREATED else None)
        yield family


class Histogramming(_Family[HistogramSeries]):
    """prometheus-client's `Histogram`, for the warm path."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        *,
        buckets: Sequence[float],
        registry: CollectorRegistry,
    ) -> None:
        bounds = tuple(float(b) for b in buckets)
        if list(bounds) != sorted(bounds):
            raise ValueError(f"{name}: buckets must be in increasing order")
        self.bounds = bounds if bounds and math.isinf(bounds[-1]) else (*bounds, math.inf)
        super().__init__(name, documentation, labelnames, registry=registry)

    def _new(self) -> HistogramSeries:
        return HistogramSeries(self.bounds)

    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)

    def collect(self) -> Iterator[Metric]:
        family = self._family()
        for labels, series in self._all():
            counts, total = series.reading()
            cumulative, buckets = 0, []
            for bound, count in zip(self.bounds, counts, strict=True):
                cumulative += count
                buckets.append((floatToGoString(bound), cumulative))
            family.add_metric(labels, buckets, total)
            if CREATED:
                names = dict(zip(self.labelnames, labels, strict=True))
                family.samples.append(Sample(self.name + "_created", names, series.created, None, None))
        yield family
