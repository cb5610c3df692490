"""A job's run record (`model_store/runs.py`), kept up to date as the job goes: best-effort.

The record is history, not the job's fate: a store that refuses a write is logged and the job goes
on (the outcome events still carry the result).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fermion.events import TrainingRequested
from fermion.model_store import EpochRecord, Manifest, RunNotFound, RunRecord, Runs, StoreError
from fermion.model_store.runs import RunStatus

log = logging.getLogger("fermion.trainer")


class JobRun:
    """The run record of one delivery of one job."""

    def __init__(self, runs: Runs, event: TrainingRequested, deliveries: int) -> None:
        self._runs = runs
        self.record = RunRecord(
            job_id=event.id,
            tenant=event.tenant,
            model_name=event.data.model_name,
            sweep=event.data.sweep,
            parameters=event.data.recipe.model_dump(mode="json"),
            dataset=event.data.dataset.model_dump(mode="json"),
            deliveries=deliveries,
        )

    def started(self) -> None:
        self._save()

    def epoch(
        self, epoch: int, loss: float, metrics: dict[str, float], seconds: float, val_loss: float | None = None
    ) -> None:
        record = EpochRecord(epoch=epoch, loss=loss, val_loss=val_loss, metrics=metrics, seconds=round(seconds, 4))
        self.record.epochs.append(record)
        self._save()

    def completed(self, manifest: Manifest) -> None:
        self.record.status = "completed"
        self.record.version = manifest.version
        self.record.metrics = dict(manifest.metrics)
        self.record.lineage = manifest.lineage.model_dump(mode="json")
        self.record.finished = datetime.now(UTC)
        self._save()

    def trial_completed(self, metrics: dict[str, float]) -> None:
        """A sweep's trial ended: its metrics, no version."""
        self.record.status = "completed"
        self.record.metrics = dict(metrics)
        self.record.finished = datetime.now(UTC)
        self._save()

    def failed(self, reason: str, status: RunStatus = "failed") -> None:
        self.record.status = status
        self.record.error = reason
        self.record.finished = datetime.now(UTC)
        self._save()

    def _save(self) -> None:
        try:
            self._runs.put(self.record)
        except (StoreError, RunNotFound) as exc:  # RunNotFound: an id no record can be kept under
            log.warning("job %s: run record not written: %s", self.record.job_id, exc)
