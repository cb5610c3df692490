"""The events that end a job: its version published, its completion (a trial's has no version), its failure.

Each id is derived from the job's and the delivery's stream sequence, so a re-run of the same
delivery is de-duplicated by JetStream.
"""

from __future__ import annotations

from typing import Any

from fermion.events import (
    FailureReport,
    ModelPublished,
    ModelVersionRef,
    ScoringFailed,
    ScoringRequested,
    TrainingCompleted,
    TrainingFailed,
    TrainingRequested,
    TrainingResult,
    derive_id,
)
from fermion.model_store import Manifest


def published(event: TrainingRequested, seq: int, manifest: Manifest, uri: str) -> ModelPublished:
    """`models.published` for the version a job registered."""
    return ModelPublished(
        id=derive_id(event.id, "published", seq),
        tenant=event.tenant,
        data=ModelVersionRef(
            model_name=manifest.name,
            version=manifest.version,
            sha256=manifest.files["model.onnx"].sha256,
            uri=uri,
            job_id=event.id,
        ),
    )


def completed(
    event: TrainingRequested, seq: int, metrics: dict[str, float], duration_s: float, version: int | None
) -> TrainingCompleted:
    """`training.completed`: with the version registered, or none for a sweep's trial."""
    return TrainingCompleted(
        id=derive_id(event.id, "completed", seq),
        tenant=event.tenant,
        data=TrainingResult(
            job_id=event.id,
            model_name=event.data.model_name,
            version=version,
            metrics=metrics,
            duration_s=round(duration_s, 3),
        ),
    )


def failed(event: TrainingRequested, seq: int, reason: str, error: str, *, retryable: bool) -> TrainingFailed:
    """`training.failed`, with the reason and whether a retry could help."""
    return TrainingFailed(**_failure(event, seq, reason, error, retryable))


def scoring_failed(event: ScoringRequested, seq: int, reason: str, error: str, *, retryable: bool) -> ScoringFailed:
    """`scoring.failed`, as `failed` for a training (the scorer's and the reaper's: one id per delivery)."""
    return ScoringFailed(**_failure(event, seq, reason, error, retryable))


def _failure(
    event: TrainingRequested | ScoringRequested, seq: int, reason: str, error: str, retryable: bool
) -> dict[str, Any]:
    """A job's failure event's fields: its id (one per delivery), its tenant and its report."""
    report = FailureReport(
        job_id=event.id, model_name=event.data.model_name, reason=reason, error=error, retryable=retryable
    )
    return {"id": derive_id(event.id, "failed", seq), "tenant": event.tenant, "data": report}
