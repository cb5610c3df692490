"""The trainer process's two kinds of job a worker can die of, for `service/reaper.py`'s reapers:
trainings (the `trainers` consumer) and batch scorings (`scorers`)."""

from __future__ import annotations

from fermion.events import (
    Event,
    FailureReport,
    ScoringFailed,
    ScoringRequested,
    TrainingRequested,
    derive_id,
    parse_event,
    streams,
    subjects,
)
from fermion.service.reaper import ERROR, Jobs

from . import outcomes


def _training_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, TrainingRequested)
    assert isinstance(event, TrainingRequested)
    return outcomes.failed(event, seq, reason, ERROR, retryable=True)


def _scoring_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, ScoringRequested)
    assert isinstance(event, ScoringRequested)
    report = FailureReport(
        job_id=event.id, model_name=event.data.model_name, reason=reason, error=ERROR, retryable=True
    )
    return ScoringFailed(id=derive_id(event.id, "failed", seq), tenant=event.tenant, data=report)


TRAININGS = Jobs(streams.TRAINER_DURABLE, subjects.TRAINING_REQUESTED, "jobs", _training_failed)
SCORINGS = Jobs(streams.SCORER_DURABLE, subjects.SCORING_REQUESTED, "scores", _scoring_failed)
