"""What metrics cost on the warm path: the inference function with `FERMION_METRICS` on and off,
warm p50 and p99 at 1 connection (and req/s at 8), measured by wrk in alternating rounds so that a
busy machine weighs on both alike. The figure that matters: the ratio of the medians of p50.

    .venv/bin/python bench/metrics_cost.py [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import bench_key, fermion_argv, free_port, oip_body, register_digits, serve, stop, wrk


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is not installed: apt-get install wrk")
    with tempfile.TemporaryDirectory(prefix="fermion-bench-") as tmp:
        home = Path(tmp)
        _, sample, _ = register_digits(home)
        body = oip_body(sample)
        auth = bench_key(home)
        env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
        variants = {
            "metrics on": {**env, "FERMION_METRICS": "true"},
            "metrics off": {**env, "FERMION_METRICS": "false"},
        }
        procs, urls = {}, {}
        try:
            for name, server_env in variants.items():
                port = free_port()
                urls[name] = f"http://127.0.0.1:{port}/v2/models/digits/infer"
                headers = {"content-type": "application/json", **auth}
                procs[name] = serve(fermion_argv(port), server_env, urls[name], body, headers)
                wrk(urls[name], body, 8, 1, headers=auth)  # warm-up
            p50: dict[str, list[float]] = {n: [] for n in variants}
            p99: dict[str, list[float]] = {n: [] for n in variants}
            rps: dict[str, list[float]] = {n: [] for n in variants}
            for i in range(args.rounds):
                for name in list(variants)[:: 1 if i % 2 == 0 else -1]:  # who goes first alternates too
                    one = wrk(urls[name], body, 1, args.seconds, headers=auth)
                    p50[name].append(one["p50"])
                    p99[name].append(one["p99"])
                    rps[name].append(wrk(urls[name], body, 8, args.seconds, headers=auth)["rps"])
        finally:
            for proc in procs.values():
                stop(proc)
    print(f"digits CNN, one OIP v2 JSON row per request, wrk {args.seconds}s x {args.rounds} rounds, alternating")
    print(f"{'server':12} {'p50 ms (1 conn)':>16} {'p99 ms (1 conn)':>16} {'req/s (8 conns)':>16}")
    for name in variants:
        print(
            f"{name:12} {statistics.median(p50[name]):16.3f} {statistics.median(p99[name]):16.3f} "
            f"{statistics.median(rps[name]):16.0f}"
        )
    on, off = statistics.median(p50["metrics on"]), statistics.median(p50["metrics off"])
    print(f"metrics' cost at 1 conn: p50 {on:.3f} vs {off:.3f} ms ({on / off:.3f}x; the target is under 1.10x)")
    print(f"the metrics calls alone, in process: {calls_us():.2f} us per request")
    for what, us in update_us().items():
        print(f"  one update, {what}: {us:.2f} us")


def calls_us(n: int = 100_000) -> float:
    """What one request's metrics calls cost by themselves (answered + one inline run), in microseconds."""
    from prometheus_client import CollectorRegistry

    from fermion.service.observability.inference import InferenceMetrics

    metrics = InferenceMetrics(CollectorRegistry())
    started = time.perf_counter()
    for _ in range(n):
        metrics.answered("digits", 1, "production", time.perf_counter())
        metrics.ran("digits", 1, 0.0001, (0.0,))
    return (time.perf_counter() - started) / n * 1e6


def update_us(n: int = 200_000) -> dict[str, float]:
    """One histogram observation and one counter increment on a cached label series: prometheus-client's
    own `Histogram`/`Counter` beside `tally`'s, which the inference metrics use (best of 5 runs)."""
    import timeit

    from prometheus_client import CollectorRegistry, Counter, Histogram

    from fermion.service.observability.exposition import LATENCY_BUCKETS
    from fermion.service.observability.tally import Counting, Histogramming

    registry = CollectorRegistry()
    theirs_h = Histogram("h", "h", ["model"], buckets=LATENCY_BUCKETS, registry=registry).labels("digits")
    theirs_c = Counter("c", "c", ["model"], registry=registry).labels("digits")
    ours_h = Histogramming("oh", "h", ["model"], buckets=LATENCY_BUCKETS, registry=registry).labels("digits")
    ours_c = Counting("oc", "c", ["model"], registry=registry).labels("digits")
    cases = {
        "prometheus-client Histogram.observe": lambda: theirs_h.observe(0.0004),
        "tally's observe": lambda: ours_h.observe(0.0004),
        "prometheus-client Counter.inc": lambda: theirs_c.inc(),
        "tally's inc": lambda: ours_c.inc(),
    }
    return {what: min(timeit.repeat(fn, number=n, repeat=5)) / n * 1e6 for what, fn in cases.items()}


if __name__ == "__main__":
    main()
