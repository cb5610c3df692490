"""The kinds of job a worker can die of, for `service/reaper.py`'s reapers in the trainer process:
trainings (the `trainers` consumer), batch scorings (`scorers`) and federations (`federations`). The
trainer reaps the federation coordinators' jobs too: it holds the grants on the job queue that the
reaper needs (read a message by sequence, delete it), and the coordinator holds none."""

from __future__ import annotations

from functools import partial

from fermion.events import ScoringRequested, TrainingRequested, streams
from fermion.events.federation import FederationFailed, FederationRequested
from fermion.service.reaper import ERROR, Jobs

from . import outcomes

# Each reported as the unit's own failure path reports it (the same builder, so the same event id).
TRAININGS = Jobs(
    streams.TRAINER_DURABLE, TrainingRequested, "jobs", partial(outcomes.failed, error=ERROR, retryable=True)
)
SCORINGS = Jobs(
    streams.SCORER_DURABLE, ScoringRequested, "scores", partial(outcomes.scoring_failed, error=ERROR, retryable=True)
)
FEDERATIONS = Jobs(
    streams.FEDERATION_DURABLE,
    FederationRequested,
    "jobs",
    lambda request, seq, reason: FederationFailed.of(request, reason),
)
