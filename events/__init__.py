"""Event contracts, subjects, streams and the JetStream bus.

The names below load their module on first use (PEP 562), so a process that needs only the settings or
the contracts (the inference function, whose cold start counts) does not import nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import streams, subjects
    from .bus import (
        TENANT_HEADER,
        Bus,
        BusError,
        BusUnavailable,
        ConsumerState,
        Delivery,
        JobQueue,
        PublishRejected,
        PublishUnconfirmed,
        StoredMessage,
    )
    from .monitoring import (
        DriftDetected,
        DriftReport,
        LabelBatch,
        LabelEntry,
        LabelsSubmitted,
        ModelRollout,
        RolloutChange,
    )
    from .schemas import (
        AliasMove,
        AuditEvent,
        AuditRecord,
        Augmentation,
        CancelRequest,
        DatasetRef,
        DatasetUploaded,
        Event,
        FailureReport,
        Gate,
        ImageContract,
        ModelPromoted,
        ModelPublished,
        ModelVersionRef,
        ProgressReport,
        Recipe,
        SweepRequest,
        TrainingCancel,
        TrainingCompleted,
        TrainingFailed,
        TrainingProgress,
        TrainingRequest,
        TrainingRequested,
        TrainingResult,
        TrainingSweep,
        new_id,
        parse_event,
    )
    from .settings import BusSettings
    from .streams import ConsumerPolicy

_EXPORTS = {
    "AliasMove": "schemas",
    "AuditEvent": "schemas",
    "AuditRecord": "schemas",
    "Augmentation": "schemas",
    "Bus": "bus",
    "BusError": "bus",
    "BusSettings": "settings",
    "BusUnavailable": "bus",
    "CancelRequest": "schemas",
    "ConsumerPolicy": "streams",
    "ConsumerState": "bus",
    "DatasetRef": "schemas",
    "DatasetUploaded": "schemas",
    "Delivery": "bus",
    "DriftDetected": "monitoring",
    "DriftReport": "monitoring",
    "Event": "schemas",
    "FailureReport": "schemas",
    "Gate": "schemas",
    "ImageContract": "schemas",
    "JobQueue": "bus",
    "LabelBatch": "monitoring",
    "LabelEntry": "monitoring",
    "LabelsSubmitted": "monitoring",
    "ModelPromoted": "schemas",
    "ModelPublished": "schemas",
    "ModelRollout": "monitoring",
    "ModelVersionRef": "schemas",
    "ProgressReport": "schemas",
    "PublishRejected": "bus",
    "PublishUnconfirmed": "bus",
    "Recipe": "schemas",
    "RolloutChange": "monitoring",
    "StoredMessage": "bus",
    "SweepRequest": "schemas",
    "TENANT_HEADER": "bus",
    "TrainingCancel": "schemas",
    "TrainingCompleted": "schemas",
    "TrainingFailed": "schemas",
    "TrainingProgress": "schemas",
    "TrainingRequest": "schemas",
    "TrainingRequested": "schemas",
    "TrainingResult": "schemas",
    "TrainingSweep": "schemas",
    "new_id": "schemas",
    "parse_event": "schemas",
}
_MODULES = ("streams", "subjects")

__all__ = [
    "TENANT_HEADER",
    "AliasMove",
    "AuditEvent",
    "AuditRecord",
    "Augmentation",
    "Bus",
    "BusError",
    "BusSettings",
    "BusUnavailable",
    "CancelRequest",
    "ConsumerPolicy",
    "ConsumerState",
    "DatasetRef",
    "DatasetUploaded",
    "Delivery",
    "DriftDetected",
    "DriftReport",
    "Event",
    "FailureReport",
    "Gate",
    "ImageContract",
    "JobQueue",
    "LabelBatch",
    "LabelEntry",
    "LabelsSubmitted",
    "ModelPromoted",
    "ModelPublished",
    "ModelRollout",
    "ModelVersionRef",
    "ProgressReport",
    "PublishRejected",
    "PublishUnconfirmed",
    "Recipe",
    "RolloutChange",
    "StoredMessage",
    "SweepRequest",
    "TrainingCancel",
    "TrainingCompleted",
    "TrainingFailed",
    "TrainingProgress",
    "TrainingRequest",
    "TrainingRequested",
    "TrainingResult",
    "TrainingSweep",
    "new_id",
    "parse_event",
    "streams",
    "subjects",
]


def __getattr__(name: str) -> Any:
    if name in _MODULES:
        value = importlib.import_module(f"{__name__}.{name}")
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
