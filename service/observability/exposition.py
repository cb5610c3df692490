"""`/metrics`: the Prometheus text format of one registry (or, under several workers, all of them).

With `PROMETHEUS_MULTIPROC_DIR` set (`TelemetrySettings.multiproc_dir`; gunicorn or uvicorn
`--workers N`), every worker writes its samples to files in that directory and a scrape sums them
(prometheus-client's multiprocess mode); otherwise a scrape reads the app's own registry.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # prometheus-client loads with the first metrics built (inference: after its first answer)
    from prometheus_client import CollectorRegistry

# Latency buckets in seconds, from a warm tiny model (100 µs) to a cold load (tens of seconds).
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
SLOW_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800, 3600)
ROWS_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


def render(registry: CollectorRegistry, multiproc_dir: Path | None = None) -> tuple[bytes, str]:
    """The body and content type of a scrape (every worker's, summed, with `multiproc_dir`)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    if multiproc_dir is not None:
        merged = CollectorRegistry()
        multiprocess.MultiProcessCollector(merged, path=str(multiproc_dir))
        return generate_latest(merged), CONTENT_TYPE_LATEST
    return generate_latest(registry), CONTENT_TYPE_LATEST


def process_started() -> float:
    """This process's start, in Unix seconds (from /proc; the import time where there is none)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[19])  # field 22, starttime, in clock ticks since boot
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - uptime + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return _IMPORTED


_IMPORTED = time.time()
