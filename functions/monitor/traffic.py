"""Serving per version, window by window: the inference functions' telemetry folded into the store's series.

Each telemetry interval's per-version stats (whichever alias routed them, or none) add to the
open window; `close` turns every version seen into a `ServingWindow` (requests, errors, p50/p99,
and the labels that arrived meanwhile) for `ServingLog.append`. A version with neither requests
nor labels in a window writes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np

from fermion.events.traffic import VersionStats
from fermion.model_store import ServingWindow

from .controller import Observed
from .ledger import Accuracy

Key = tuple[str, str, int]  # tenant, model, version


class TrafficWindows:
    """The open window of every version's traffic, and the label tallies at the last close."""

    def __init__(self) -> None:
        self.opened = datetime.now(UTC)
        self._open: dict[Key, Observed] = {}
        self._labels_at_close: dict[Key, tuple[int, int]] = {}

    def add(self, stats: VersionStats) -> None:
        """Fold one version's telemetry interval into the open window."""
        self._open.setdefault((stats.tenant, stats.name, stats.version), Observed()).add(stats)

    def close(
        self, accuracy: dict[Key, Accuracy], now: datetime | None = None
    ) -> dict[tuple[str, str], list[ServingWindow]]:
        """The windows of every version seen since the last close, per model; a new window opens."""
        now = now or datetime.now(UTC)
        seconds = max((now - self.opened).total_seconds(), 1e-3)
        found: dict[tuple[str, str], list[ServingWindow]] = {}
        for key in sorted(set(self._open) | set(accuracy)):
            seen = self._open.get(key, Observed())
            tally = accuracy.get(key, Accuracy())
            was = self._labels_at_close.get(key, (0, 0))
            labelled, correct = tally.labelled - was[0], tally.correct - was[1]
            self._labels_at_close[key] = (tally.labelled, tally.correct)
            if not seen.requests and not labelled:
                continue
            latencies = np.asarray(seen.latency_ms, dtype=np.float64)
            found.setdefault(key[:2], []).append(
                ServingWindow(
                    version=key[2],
                    at=self.opened,
                    seconds=round(seconds, 3),
                    requests=seen.requests,
                    errors=seen.errors,
                    p50_ms=round(float(np.percentile(latencies, 50)), 3) if latencies.size else None,
                    p99_ms=round(float(np.percentile(latencies, 99)), 3) if latencies.size else None,
                    labelled=labelled,
                    correct=correct,
                )
            )
        self._open = {}
        self.opened = now
        return found
