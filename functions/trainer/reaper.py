"""The kinds of job a worker can die of, for `service/reaper.py`'s reapers in the trainer process:
trainings (the `trainers` consumer), batch scorings (`scorers`) and federations (`federations`). The
trainer reaps the federation coordinators' jobs too: it holds the grants on the job queue that the
reaper needs (read a message by sequence, delete it), and the coordinator holds none."""

from __future__ import annotations

from fermion.events import (
    Event,
    ScoringRequested,
    TrainingRequested,
    parse_event,
    streams,
    subjects,
)
from fermion.events.federation import FederationFailed, FederationRequested
from fermion.service.reaper import ERROR, Jobs

from . import outcomes


def _training_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, TrainingRequested)
    assert isinstance(event, TrainingRequested)
    return outcomes.failed(event, seq, reason, ERROR, retryable=True)


def _scoring_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, ScoringRequested)
    assert isinstance(event, ScoringRequested)
    return outcomes.scoring_failed(event, seq, reason, ERROR, retryable=True)


def _federation_failed(data: bytes, seq: int, reason: str) -> Event:
    event = parse_event(data, FederationRequested)
    assert isinstance(event, FederationRequested)
    return FederationFailed.of(event, reason)  # as the coordinator's own (the same id)


TRAININGS = Jobs(streams.TRAINER_DURABLE, subjects.TRAINING_REQUESTED, "jobs", _training_failed)
SCORINGS = Jobs(streams.SCORER_DURABLE, subjects.SCORING_REQUESTED, "scores", _scoring_failed)
FEDERATIONS = Jobs(streams.FEDERATION_DURABLE, subjects.FEDERATED_REQUESTED, "jobs", _federation_failed)
