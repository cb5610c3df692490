"""Event contracts, subjects, streams and the JetStream bus."""

from . import subjects
from .bus import Bus, BusError, BusUnavailable, Delivery, JobQueue, PublishRejected
from .schemas import (
    AliasMove,
    DatasetRef,
    DatasetUploaded,
    Event,
    FailureReport,
    ModelPromoted,
    ModelPublished,
    ModelVersionRef,
    ProgressReport,
    Recipe,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequest,
    TrainingRequested,
    TrainingResult,
    new_id,
    parse_event,
)
from .settings import BusSettings
from .streams import ConsumerPolicy

__all__ = [
    "AliasMove",
    "Bus",
    "BusError",
    "BusSettings",
    "BusUnavailable",
    "ConsumerPolicy",
    "DatasetRef",
    "DatasetUploaded",
    "Delivery",
    "Event",
    "FailureReport",
    "JobQueue",
    "ModelPromoted",
    "ModelPublished",
    "ModelVersionRef",
    "ProgressReport",
    "PublishRejected",
    "Recipe",
    "TrainingCompleted",
    "TrainingFailed",
    "TrainingProgress",
    "TrainingRequest",
    "TrainingRequested",
    "TrainingResult",
    "new_id",
    "parse_event",
    "subjects",
]
