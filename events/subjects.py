"""NATS subjects: the one place their names are spelled."""

PREFIX = "fermion"

DATASETS_UPLOADED = f"{PREFIX}.datasets.uploaded"
TRAINING_REQUESTED = f"{PREFIX}.training.requested"
TRAINING_SWEEP = f"{PREFIX}.training.sweep"
TRAINING_PROGRESS = f"{PREFIX}.training.progress"
TRAINING_COMPLETED = f"{PREFIX}.training.completed"
TRAINING_FAILED = f"{PREFIX}.training.failed"
TRAINING_CANCEL = f"{PREFIX}.training.cancel"  # .{job_id}: one subject per job, so its last message is a lookup
SCORING_REQUESTED = f"{PREFIX}.scoring.requested"  # work queue: the scorers share it (issue 26)
SCORING_PROGRESS = f"{PREFIX}.scoring.progress"
SCORING_COMPLETED = f"{PREFIX}.scoring.completed"
SCORING_FAILED = f"{PREFIX}.scoring.failed"
MODELS_PUBLISHED = f"{PREFIX}.models.published"
MODELS_PROMOTED = f"{PREFIX}.models.promoted"
MODELS_ROLLOUT = f"{PREFIX}.models.rollout"  # .{action}: started, stepped, promoted, rolled_back, waiting
MODELS_DRIFT_DETECTED = f"{PREFIX}.models.drift_detected"
MODELS_DRIFT_JUDGED = f"{PREFIX}.models.drift_judged"  # every judged window, calm or not
MODELS_LABELS = f"{PREFIX}.models.labels"
TELEMETRY = f"{PREFIX}.telemetry"  # core NATS, not stored: per-version stats, input samples, predictions
DLQ_PREFIX = f"{PREFIX}.dlq"
AUDIT_PREFIX = f"{PREFIX}.audit"  # .{action}: alias moves, key creation and revocation, refused requests


def audit(action: str) -> str:
    """The subject an audit record of `action` goes to."""
    return f"{AUDIT_PREFIX}.{action}"


def dead_letter(subject: str) -> str:
    """The dead-letter subject for events that arrived on `subject`."""
    return f"{DLQ_PREFIX}.{subject.removeprefix(PREFIX + '.')}"


def cancel(job_id: str) -> str:
    """The subject that cancels one job."""
    return f"{TRAINING_CANCEL}.{job_id}"


def max_deliveries_advisory(stream: str, consumer: str) -> str:
    """JetStream's advisory when a message ran out of deliveries on a consumer."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


# --- federated training (issue 18) ---------------------------------------------------------------
FEDERATED_REQUESTED = f"{PREFIX}.federated.requested"  # work queue: the coordinators share it
FEDERATED_ROUND_STARTED = f"{PREFIX}.federated.round.started"
FEDERATED_ROUND_COMPLETED = f"{PREFIX}.federated.round.completed"
FEDERATED_UPDATE_SUBMITTED = f"{PREFIX}.federated.update.submitted"
FEDERATED_UPDATE_REFUSED = f"{PREFIX}.federated.update.refused"
FEDERATED_COMPLETED = f"{PREFIX}.federated.completed"
FEDERATED_FAILED = f"{PREFIX}.federated.failed"
FEDERATED_EVENTS = [
    f"{PREFIX}.federated.round.>",
    f"{PREFIX}.federated.update.>",
    FEDERATED_COMPLETED,
    FEDERATED_FAILED,
]
"""The event-log subjects of federations (explicit, so none overlaps the work queue's)."""
