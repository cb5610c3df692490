"""Event contracts, subjects, streams and the JetStream bus.

The names below load their module on first use (PEP 562), so a process that needs only the settings or
the contracts (the inference function, whose cold start counts) does not import nats-py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from . import streams, subjects
    from .audit import AuditEvent, AuditRecord
    from .bus import TENANT_HEADER, Bus
    from .config import BusConfig
    from .deliveries import ConsumerState, Delivery, JobQueue, StoredMessage
    from .envelope import Event, derive_id, new_id, upload_id
    from .errors import BusError, BusUnavailable, PublishRejected, PublishUnconfirmed
    from .models import AliasMove, ModelPromoted, ModelPublished, ModelVersionRef
    from .monitoring import (
        DriftDetected,
        DriftJudged,
        DriftReport,
        LabelBatch,
        LabelEntry,
        LabelsSubmitted,
        ModelRollout,
        RolloutChange,
    )
    from .schemas import parse_event
    from .scoring import (
        ScoringCompleted,
        ScoringFailed,
        ScoringProgress,
        ScoringReport,
        ScoringRequest,
        ScoringRequested,
        ScoringResult,
    )
    from .settings import BusSettings
    from .streams import ConsumerPolicy
    from .training import (
        Augmentation,
        CancelRequest,
        DatasetRef,
        DatasetUploaded,
        Distillation,
        FailureReport,
        Gate,
        ImageContract,
        ParamSpec,
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
    )

_EXPORTS = {
    **dict.fromkeys(
        [
            "ScoringCompleted",
            "ScoringFailed",
            "ScoringProgress",
            "ScoringReport",
            "ScoringRequest",
            "ScoringRequested",
            "ScoringResult",
        ],
        "scoring",
    ),
    "AliasMove": "models",
    "AuditEvent": "audit",
    "AuditRecord": "audit",
    "Augmentation": "training",
    "Bus": "bus",
    "Distillation": "training",
    "BusError": "errors",
    "BusConfig": "config",
    "BusSettings": "settings",
    "BusUnavailable": "errors",
    "CancelRequest": "training",
    "ConsumerPolicy": "streams",
    "ConsumerState": "deliveries",
    "DatasetRef": "training",
    "DatasetUploaded": "training",
    "Delivery": "deliveries",
    "DriftDetected": "monitoring",
    "DriftJudged": "monitoring",
    "DriftReport": "monitoring",
    "Event": "envelope",
    "FailureReport": "training",
    "Gate": "training",
    "ImageContract": "training",
    "JobQueue": "deliveries",
    "LabelBatch": "monitoring",
    "LabelEntry": "monitoring",
    "LabelsSubmitted": "monitoring",
    "ModelPromoted": "models",
    "ModelPublished": "models",
    "ModelRollout": "monitoring",
    "ModelVersionRef": "models",
    "ProgressReport": "training",
    "PublishRejected": "errors",
    "PublishUnconfirmed": "errors",
    "ParamSpec": "training",
    "Recipe": "training",
    "RolloutChange": "monitoring",
    "StoredMessage": "deliveries",
    "SweepRequest": "training",
    "TENANT_HEADER": "bus",
    "TrainingCancel": "training",
    "TrainingCompleted": "training",
    "TrainingFailed": "training",
    "TrainingProgress": "training",
    "TrainingRequest": "training",
    "TrainingRequested": "training",
    "TrainingResult": "training",
    "TrainingSweep": "training",
    "derive_id": "envelope",
    "new_id": "envelope",
    "upload_id": "envelope",
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
    "BusConfig",
    "BusError",
    "BusSettings",
    "BusUnavailable",
    "CancelRequest",
    "ConsumerPolicy",
    "ConsumerState",
    "DatasetRef",
    "DatasetUploaded",
    "Delivery",
    "Distillation",
    "DriftDetected",
    "DriftJudged",
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
    "ParamSpec",
    "ProgressReport",
    "PublishRejected",
    "PublishUnconfirmed",
    "Recipe",
    "RolloutChange",
    "ScoringCompleted",
    "ScoringFailed",
    "ScoringProgress",
    "ScoringReport",
    "ScoringRequest",
    "ScoringRequested",
    "ScoringResult",
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
    "derive_id",
    "new_id",
    "parse_event",
    "streams",
    "subjects",
    "upload_id",
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
