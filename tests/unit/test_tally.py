"""`tally`'s counters and histograms scrape exactly as prometheus-client's `Counter` and `Histogram`
would after the same updates, stay exact under threads, and refuse what those refuse."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

from fermion.service.observability.exposition import LATENCY_BUCKETS, ROWS_BUCKETS
from fermion.service.observability.tally import Counting, Histogramming

# On a bound, between bounds, under the first, past the last, zero, and a huge one.
VALUES = [0.0, 0.0001, 0.00011, 0.0004, 0.25, 0.2500001, 9.99, 10, 10.5, 1e9, 0.003, 0.003]


def _lines(registry: CollectorRegistry) -> list[str]:
    """The scrape's lines, each `_created` sample's timestamp left out (the two were made apart)."""
    lines = generate_latest(registry).decode().splitlines()
    return [line.rsplit(" ", 1)[0] if "_created" in line else line for line in lines]


@pytest.mark.parametrize("buckets", [LATENCY_BUCKETS, ROWS_BUCKETS, (1.0, 2.0, math.inf)])
def test_a_histogram_scrapes_as_prometheus_clients(buckets: tuple[float, ...]) -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Histogram("fermion_x_seconds", "Some time.", ["model", "version"], buckets=buckets, registry=theirs)
    tallied = Histogramming("fermion_x_seconds", "Some time.", ["model", "version"], buckets=buckets, registry=ours)
    for i, value in enumerate(VALUES):
        labels = ("digits", str(1 + i % 2))
        reference.labels(*labels).observe(value)
        tallied.labels(*labels).observe(value)
    reference.labels("empty", "3")
    tallied.labels("empty", "3")  # a series with no observation yet: all zero, as theirs
    assert _lines(ours) == _lines(theirs)
    assert ours.get_sample_value("fermion_x_seconds_count", {"model": "digits", "version": "1"}) == 6


def test_a_counter_scrapes_as_prometheus_clients() -> None:
    theirs, ours = CollectorRegistry(), CollectorRegistry()
    reference = Counter("fermion_y", "Some count.", ["model", "status"], registry=theirs)
    tallied = Counting("fermion_y", "Some count.", ["model", "status"], registry=ours)
    for model, status, amount in [("a", "200", 1), ("a", "200", 2.5), ("b", "400", 1), ("a", 200, 1)]:
        reference.labels(model, status).inc(amount)
        tallied.labels(model, status).inc(amount)
    assert _lines(ours) == _lines(theirs)
    assert ours.get_sample_value("fermion_y_total", {"model": "a", "status": "200"}) == 4.5
    assert ours.get_sample_value("fermion_y_created", {"model": "b", "status": "400"}) is not None


def test_updates_from_threads_are_all_counted() -> None:
    registry = CollectorRegistry()
    histograms = Histogramming("fermion_h", "h", ["model"], buckets=LATENCY_BUCKETS, registry=registry)
    counters = Counting("fermion_c", "c", ["model"], registry=registry)

    def hammer() -> None:
        for i in range(40_000):  # every thread makes the same new series at about the same time
            histograms.labels(f"m{i // 10}").observe(0.0003)
            counters.labels(f"m{i // 10}").inc()

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter can: a lost update shows
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    samples = {
        (s.name, s.labels.get("model"), s.labels.get("le")): s.value for f in registry.collect() for s in f.samples
    }
    for n in range(4000):
        model = f"m{n}"
        assert samples["fermion_c_total", model, None] == 40
        assert samples["fermion_h_count", model, None] == 40
        assert samples["fermion_h_bucket", model, "0.0005"] == 40
        assert samples["fermion_h_bucket", model, "0.00025"] == 0
        assert samples["fermion_h_sum", model, None] == pytest.approx(40 * 0.0003)


def test_it_refuses_what_prometheus_client_refuses() -> None:
    registry = CollectorRegistry()
    counter = Counting("fermion_z", "z", ["model"], registry=registry)
    with pytest.raises(ValueError, match="only goes up"):
        counter.labels("m").inc(-1)
    with pytest.raises(ValueError, match="1 label values expected, got 2"):
        counter.labels("m", "extra")
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        Counting("fermion_z", "again", ["model"], registry=registry)  # the registry's own check, as for a Counter
    with pytest.raises(ValueError, match="increasing order"):
        Histogramming("fermion_w", "w", [], buckets=(2.0, 1.0), registry=registry)


MULTIPROCESS = """
import sys
from prometheus_client import CollectorRegistry, generate_latest, multiprocess
from fermion.service.observability.inference import InferenceMetrics
from fermion.service.observability.tally import in_process

assert not in_process()
metrics = InferenceMetrics(CollectorRegistry())
metrics.answered("digits", 1, "production", 0.0)
metrics.ran("digits", 3, 0.0002, (0.0,))
merged = CollectorRegistry()
multiprocess.MultiProcessCollector(merged, path=sys.argv[1])  # what a scrape of several workers reads
sys.stdout.write(generate_latest(merged).decode())
"""


def test_under_prometheus_clients_multiprocess_mode_the_workers_series_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS, str(tmp_path)], env=env, capture_output=True, text=True, check=True
    ).stdout
    labels = 'alias="production",model="digits",status="200",version="1"'
    assert f"fermion_inference_requests_total{{{labels}}} 1.0" in out
    assert 'fermion_inference_batch_size_rows_count{model="digits"} 1.0' in out
    assert 'fermion_inference_rows_total{model="digits"} 3.0' in out
