"""NATS subjects: the one place their names are spelled."""

PREFIX = "fermion"

DATASETS_UPLOADED = f"{PREFIX}.datasets.uploaded"
TRAINING_REQUESTED = f"{PREFIX}.training.requested"
TRAINING_PROGRESS = f"{PREFIX}.training.progress"
TRAINING_COMPLETED = f"{PREFIX}.training.completed"
TRAINING_FAILED = f"{PREFIX}.training.failed"
MODELS_PUBLISHED = f"{PREFIX}.models.published"
MODELS_PROMOTED = f"{PREFIX}.models.promoted"
DLQ_PREFIX = f"{PREFIX}.dlq"


def dead_letter(subject: str) -> str:
    """The dead-letter subject for events that arrived on `subject`."""
    return f"{DLQ_PREFIX}.{subject.removeprefix(PREFIX + '.')}"
