"""Ground truth: predictions remembered by request id, joined with labels as they arrive.

Online accuracy is counted per (tenant, model, version). A label that arrives before its
prediction's telemetry batch waits (bounded) for it.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

Key = tuple[str, str, int]  # tenant, model, version


@dataclass
class Accuracy:
    """Labelled predictions of one version, and how many were right."""

    labelled: int = 0
    correct: int = 0

    @property
    def ratio(self) -> float | None:
        """Accuracy so far (None: no labels yet)."""
        return self.correct / self.labelled if self.labelled else None


class Ledger:
    """Predictions by request id, labels waiting for them, and accuracy per version."""

    def __init__(self, capacity: int = 200_000, settled: Callable[[Key, bool, Accuracy], None] | None = None) -> None:
        self.capacity = capacity
        self._on_settled = settled
        self._predictions: OrderedDict[tuple[str, str, str], tuple[int, str]] = OrderedDict()
        self._waiting: OrderedDict[tuple[str, str, str], str] = OrderedDict()
        self.accuracy: dict[Key, Accuracy] = {}

    def predicted(self, tenant: str, name: str, request_id: str, version: int, predicted_label: str) -> None:
        """Remember a prediction (and settle a label that was waiting for it)."""
        key = (tenant, name, request_id)
        self._predictions[key] = (version, predicted_label)
        if len(self._predictions) > self.capacity:
            self._predictions.popitem(last=False)
        if (label := self._waiting.pop(key, None)) is not None:
            self._settle(key, label)

    def labelled(self, tenant: str, name: str, request_id: str, label: str) -> None:
        """Count a label against its prediction, or keep it until the prediction arrives."""
        key = (tenant, name, request_id)
        if key in self._predictions:
            self._settle(key, label)
            return
        self._waiting[key] = label
        if len(self._waiting) > self.capacity:
            self._waiting.popitem(last=False)

    def _settle(self, key: tuple[str, str, str], label: str) -> None:
        version, predicted = self._predictions.pop(key)
        tally = self.accuracy.setdefault((key[0], key[1], version), Accuracy())
        tally.labelled += 1
        tally.correct += predicted == label
        if self._on_settled is not None:  # the monitor's metrics
            self._on_settled((key[0], key[1], version), predicted == label, tally)
