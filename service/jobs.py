"""Job status, rebuilt from the event log: nothing but NATS remembers a job (trainings and batch scorings).

States say what happened: `queued` → `running` → `completed`, `failed` or `cancelled` (a
`training.failed` whose error is `JobCancelled`). `epoch` is the last epoch a progress report
announced; a cancelled job's reason names the epoch it stopped after.
"""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from fermion.events import cloudevent, subjects
from fermion.events.envelope import NAME_PATTERN
from fermion.events.schemas import parse_event
from fermion.events.scoring import ScoringCompleted, ScoringFailed, ScoringProgress, ScoringRequested
from fermion.events.training import (
    ProgressReport,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
)

if TYPE_CHECKING:  # only a type here: the bus (nats-py) is no part of the base install's client
    from fermion.events.deliveries import StoredMessage

ENDED = ("completed", "failed", "cancelled")
_STOPPED_AFTER = re.compile(r"after epoch (\d+)")


@dataclass
class JobStatus:
    """Where one training job stands."""

    job_id: str
    model_name: str
    tenant: str = "default"
    state: str = "queued"  # queued → running → completed | failed | cancelled
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
    kind: str = "training"
    """`training` or `scoring` (a batch scoring job: rows instead of epochs, its predictions in `output`)."""
    rows_done: int = 0
    rows: int | None = None
    output: str | None = None
    """A finished scoring job's predictions: their object key in the store (`fermion jobs fetch`)."""

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["updated"] = self.updated.isoformat() if self.updated else None
        return out


@dataclass(frozen=True)
class DeadLetter:
    """A dead-lettered message: the original event, why, and after how many deliveries.

    `tenant` is None for a letter that names no tenant (its bytes are not an event, or its tenant
    field is missing or not a tenant name): only an admin sees those.
    """

    seq: int
    job_id: str
    model_name: str
    tenant: str | None
    reason: str
    deliveries: str
    data: bytes
    subject: str = subjects.TRAINING_REQUESTED
    """Where the original message was published (a retry publishes it there again)."""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "data"}


def job_statuses(queued: list[StoredMessage], log: list[StoredMessage]) -> dict[str, JobStatus]:
    """Fold queued requests and the training.* event log into one status per job, oldest first."""
    jobs: dict[str, JobStatus] = {}
    for m in queued:
        with contextlib.suppress(ValidationError):  # malformed ones are in the dead-letter log
            req = parse_event(m.data)
            if isinstance(req, TrainingRequested):
                status = JobStatus(req.id, req.data.model_name, req.tenant, epochs=req.data.recipe.epochs)
            elif isinstance(req, ScoringRequested):
                status = JobStatus(req.id, req.data.model_name, req.tenant, kind="scoring", version=req.data.version)
            else:
                continue
            status.updated = req.time
            jobs.setdefault(req.id, status)
    for m in log:
        with contextlib.suppress(ValidationError):  # malformed ones are in the dead-letter log
            event = parse_event(m.data)
            data = getattr(event, "data", None)  # every training.* event carries its job's id in data
            job_id = getattr(data, "job_id", None)
            if job_id is None:
                continue
            job = jobs.setdefault(job_id, JobStatus(job_id, getattr(data, "model_name", "?"), event.tenant))
            if isinstance(event, ScoringProgress | ScoringCompleted | ScoringFailed):
                _apply_scoring(job, event)
            else:
                _apply(job, event)
    return jobs


def _apply(job: JobStatus, event: Any) -> None:
    job.updated = event.time
    if isinstance(event, TrainingProgress) and job.state in ("queued", "running"):
        d = event.data
        job.state, job.epoch, job.epochs, job.loss, job.metrics = "running", d.epoch, d.epochs, d.loss, d.metrics
        _note_ranks(job, d)
    elif isinstance(event, TrainingCompleted):
        job.state, job.version, job.metrics, job.reason = "completed", event.data.version, event.data.metrics, None
    elif isinstance(event, TrainingFailed):
        job.reason = event.data.reason
        if event.data.error == "JobCancelled":
            job.state = "cancelled"
            if m := _STOPPED_AFTER.search(event.data.reason):  # the epoch it stopped after, not the last report
                job.epoch = int(m[1])
        else:
            job.state = "failed"


def _apply_scoring(job: JobStatus, event: ScoringProgress | ScoringCompleted | ScoringFailed) -> None:
    job.updated, job.kind = event.time, "scoring"
    if isinstance(event, ScoringProgress) and job.state in ("queued", "running"):
        job.state, job.rows_done, job.rows = "running", event.data.rows_done, event.data.rows or job.rows
    elif isinstance(event, ScoringCompleted):
        d = event.data
        job.state, job.version, job.rows_done, job.rows, job.output, job.reason = (
            "completed",
            d.version,
            d.rows,
            d.rows,
            d.key,
            None,
        )
    elif isinstance(event, ScoringFailed):
        job.state, job.reason = "failed", event.data.reason


def dead_letters(log: list[StoredMessage]) -> list[DeadLetter]:
    """The dead-letter log (`fermion.dlq.>`), oldest first."""
    out = []
    for m in log:
        subject = f"{subjects.PREFIX}.{m.subject.removeprefix(subjects.DLQ_PREFIX + '.')}"
        tenant: str | None
        try:
            event = parse_event(m.data)
            data = getattr(event, "data", None)
            job_id, model, tenant = event.id, getattr(data, "model_name", "?"), event.tenant
        except ValidationError:
            job_id, model, tenant = f"seq-{m.seq}", "?", _named_tenant(m.data)
        reason, deliveries = m.headers.get("Fermion-Reason", ""), m.headers.get("Fermion-Deliveries", "?")
        out.append(DeadLetter(m.seq, job_id, model, tenant, reason, deliveries, m.data, subject))
    return out


def _named_tenant(data: bytes) -> str | None:
    """The tenant a malformed event names, if it names one at all (either envelope); else None."""
    try:
        doc = json.loads(cloudevent.unwrap(data))
    except (ValueError, RecursionError, ValidationError):
        return None
    tenant = doc.get("tenant") if isinstance(doc, dict) else None
    if isinstance(tenant, str) and len(tenant) <= 63 and re.fullmatch(NAME_PATTERN, tenant):
        return tenant
    return None


def by_prefix(ids: list[str], prefix: str, what: str = "job") -> str:
    """The one id starting with `prefix`; LookupError naming the problem otherwise."""
    if prefix in ids:
        return prefix
    found = [i for i in ids if i.startswith(prefix)]
    if not found:
        raise LookupError(f"no {what} {prefix!r}")
    if len(found) > 1:
        raise LookupError(
            f"{what} prefix {prefix!r} is ambiguous: {', '.join(found[:5])}{' …' if len(found) > 5 else ''}"
        )
    return found[0]


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
