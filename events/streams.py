"""JetStream streams and the trainer's durable consumer: the one place they are defined."""

from __future__ import annotations

from dataclasses import dataclass

from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)

from . import subjects

JOBS_STREAM = "FERMION_JOBS"
EVENTS_STREAM = "FERMION_EVENTS"
TRAINER_DURABLE = "trainers"
PIPELINE_DURABLE = "pipelines"
SWEEP_DURABLE = "sweeps"
RETRAIN_DURABLE = "retrains"
FEDERATION_DURABLE = "federations"
SCORER_DURABLE = "scorers"
# Every durable consumer the trainer replicas serve, (stream, durable): what scales them from zero
# (KEDA, infra/jetstream_lag.py) and what the monitor watches for work waiting with no trainer.
TRAINER_CONSUMERS: tuple[tuple[str, str], ...] = (
    (JOBS_STREAM, TRAINER_DURABLE),
    (JOBS_STREAM, SWEEP_DURABLE),
    (JOBS_STREAM, SCORER_DURABLE),
    (EVENTS_STREAM, PIPELINE_DURABLE),
    (EVENTS_STREAM, RETRAIN_DURABLE),
)


@dataclass(frozen=True)
class ConsumerPolicy:
    """How long a job may go quiet before redelivery, and how often it is tried.

    A running job sends in-progress heartbeats well inside `ack_wait_s`, so only a worker that
    died (or hung) loses its job to another replica. Retry delays are the worker's `nak(delay)`.
    """

    ack_wait_s: float = 30.0
    max_deliver: int = 5


def stream_configs(duplicate_window_s: float = 600.0, replicas: int = 1) -> list[StreamConfig]:
    """The streams Fermion needs: a work queue for jobs and a limits stream for the event log.

    `replicas` copies of each on a cluster (consumers follow their stream's count).
    """
    return [
        StreamConfig(
            name=JOBS_STREAM,
            subjects=[
                subjects.TRAINING_REQUESTED,
                subjects.TRAINING_SWEEP,
                subjects.FEDERATED_REQUESTED,
                subjects.SCORING_REQUESTED,
            ],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            duplicate_window=duplicate_window_s,
            num_replicas=replicas,
        ),
        StreamConfig(
            name=EVENTS_STREAM,
            subjects=[
                subjects.DATASETS_UPLOADED,
                subjects.TRAINING_PROGRESS,
                subjects.TRAINING_COMPLETED,
                subjects.TRAINING_FAILED,
                f"{subjects.TRAINING_CANCEL}.>",
                subjects.SCORING_PROGRESS,
                subjects.SCORING_COMPLETED,
                subjects.SCORING_FAILED,
                f"{subjects.PREFIX}.models.>",
                f"{subjects.DLQ_PREFIX}.>",
                f"{subjects.AUDIT_PREFIX}.>",
                *subjects.FEDERATED_EVENTS,
            ],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=7 * 24 * 3600.0,
            duplicate_window=duplicate_window_s,
            num_replicas=replicas,
        ),
    ]


def _durable(name: str, subject: str, policy: ConsumerPolicy, deliver: DeliverPolicy) -> ConsumerConfig:
    """A durable pull consumer with explicit acks, shared by every replica that binds to it."""
    return ConsumerConfig(
        durable_name=name,
        filter_subject=subject,
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=deliver,
        ack_wait=policy.ack_wait_s,
        max_deliver=policy.max_deliver,
    )


def trainer_consumer(policy: ConsumerPolicy) -> ConsumerConfig:
    """The durable pull consumer every trainer replica shares."""
    return _durable(TRAINER_DURABLE, subjects.TRAINING_REQUESTED, policy, DeliverPolicy.ALL)


def sweep_consumer(policy: ConsumerPolicy) -> ConsumerConfig:
    """The durable pull consumer for sweeps: a sweep waits for its trials, heartbeating meanwhile."""
    return _durable(SWEEP_DURABLE, subjects.TRAINING_SWEEP, policy, DeliverPolicy.ALL)


def pipeline_consumer() -> ConsumerConfig:
    """The durable pull consumer that turns dataset uploads into training requests by rule (new ones only)."""
    return _durable(PIPELINE_DURABLE, subjects.DATASETS_UPLOADED, ConsumerPolicy(), DeliverPolicy.NEW)


def retrain_consumer() -> ConsumerConfig:
    """The durable pull consumer that turns drift alarms into retraining by rule (new ones only)."""
    return _durable(RETRAIN_DURABLE, subjects.MODELS_DRIFT_DETECTED, ConsumerPolicy(), DeliverPolicy.NEW)


def federation_consumer(policy: ConsumerPolicy) -> ConsumerConfig:
    """The durable pull consumer the federation coordinators share: one holds a federation, heartbeating."""
    return _durable(FEDERATION_DURABLE, subjects.FEDERATED_REQUESTED, policy, DeliverPolicy.ALL)


def scorer_consumer(policy: ConsumerPolicy) -> ConsumerConfig:
    """The durable pull consumer the batch scorers share (issue 26)."""
    return _durable(SCORER_DURABLE, subjects.SCORING_REQUESTED, policy, DeliverPolicy.ALL)
