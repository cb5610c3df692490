"""Job status, rebuilt from the event log: nothing but NATS remembers a job."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime

from pydantic import ValidationError

from fermion.events import (
    ProgressReport,
    StoredMessage,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    parse_event,
)


@dataclass
class JobStatus:
    """Where one training job stands."""

    job_id: str
    model_name: str
    state: str = "queued"  # queued → running → completed | failed
    epoch: int = 0
    epochs: int = 0
    loss: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    version: int | None = None
    reason: str | None = None
    updated: datetime | None = None
    workers: int = 1
    restarts: int = 0
    """Elastic restarts of a distributed job's rank group."""
    resumed_at: list[int] = field(default_factory=list)
    """The checkpoint epoch of every resume (after a redelivery or a restart), in order."""
    samples_per_s: list[float] = field(default_factory=list)
    """Each rank's training throughput in the latest epoch."""


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered job message: the original event, why, and after how many deliveries."""

    seq: int
    job_id: str
    model_name: str
    reason: str
    deliveries: str
    data: bytes


def job_statuses(queued: list[StoredMessage], log: list[StoredMessage]) -> dict[str, JobStatus]:
    """Fold queued requests and the training.* event log into one status per job, oldest first."""
    jobs: dict[str, JobStatus] = {}
    for m in queued:
        with contextlib.suppress(ValidationError):  # malformed ones are in the dead-letter log
            req = parse_event(m.data, TrainingRequested)
            assert isinstance(req, TrainingRequested)
            jobs.setdefault(req.id, JobStatus(req.id, req.data.model_name, updated=req.time))
    for m in log:
        with contextlib.suppress(ValidationError):  # malformed ones are in the dead-letter log
            event = parse_event(m.data)
            data = getattr(event, "data", None)  # every training.* event carries its job's id in data
            job_id = getattr(data, "job_id", None)
            if job_id is None:
                continue
            job = jobs.setdefault(job_id, JobStatus(job_id, getattr(data, "model_name", "?")))
            job.updated = event.time
            if isinstance(event, TrainingProgress) and job.state in ("queued", "running"):
                d = event.data
                job.state, job.epoch, job.epochs, job.loss, job.metrics = (
                    "running",
                    d.epoch,
                    d.epochs,
                    d.loss,
                    d.metrics,
                )
                _note_ranks(job, d)
            elif isinstance(event, TrainingCompleted):
                job.state, job.version, job.metrics, job.reason = (
                    "completed",
                    event.data.version,
                    event.data.metrics,
                    None,
                )
            elif isinstance(event, TrainingFailed):
                job.state, job.reason = "failed", event.data.reason
    return jobs


def _note_ranks(job: JobStatus, d: ProgressReport) -> None:
    """Workers, restarts, resumes and per-rank throughput, from one progress report."""
    if d.workers is not None:
        job.workers = d.workers
    if d.restarts is not None:
        job.restarts = max(job.restarts, d.restarts)
    if d.resumed_at is not None:
        job.resumed_at.append(d.resumed_at)
    if d.samples_per_s:
        job.samples_per_s = list(d.samples_per_s)


def dead_letters(log: list[StoredMessage]) -> list[DeadLetter]:
    """The dead-letter log, oldest first."""
    out = []
    for m in log:
        try:
            req = parse_event(m.data, TrainingRequested)
            job_id, model = req.id, req.data.model_name  # type: ignore[attr-defined]
        except ValidationError:
            job_id, model = f"seq-{m.seq}", "?"
        out.append(
            DeadLetter(
                m.seq,
                job_id,
                model,
                m.headers.get("Fermion-Reason", ""),
                m.headers.get("Fermion-Deliveries", "?"),
                m.data,
            )
        )
    return out
