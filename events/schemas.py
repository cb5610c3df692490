"""Every event type as one union, and parsing an event from the wire (either envelope).

The types live by what they describe: envelope.py (the shared envelope), training.py, models.py,
audit.py, federation.py and scoring.py.
"""

from __future__ import annotations

from typing import Annotated, TypeVar

from pydantic import Field, TypeAdapter

from . import cloudevent
from .audit import AuditEvent
from .envelope import Event
from .federation import (
    FederationCompleted,
    FederationFailed,
    FederationRequested,
    RoundCompleted,
    RoundStarted,
    UpdateRefused,
    UpdateSubmitted,
)
from .models import ModelPromoted, ModelPublished
from .scoring import ScoringCompleted, ScoringFailed, ScoringProgress, ScoringRequested
from .training import (
    DatasetUploaded,
    TrainingCancel,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequested,
    TrainingSweep,
)

AnyEvent = Annotated[
    DatasetUploaded
    | TrainingRequested
    | TrainingSweep
    | TrainingProgress
    | TrainingCompleted
    | TrainingFailed
    | TrainingCancel
    | ModelPublished
    | ModelPromoted
    | AuditEvent
    | FederationRequested  # federated training
    | RoundStarted
    | UpdateSubmitted
    | UpdateRefused
    | RoundCompleted
    | FederationCompleted
    | FederationFailed
    | ScoringRequested  # batch scoring (issue 26)
    | ScoringProgress
    | ScoringCompleted
    | ScoringFailed,
    Field(discriminator="type"),
]

E = TypeVar("E", bound=Event)
_any_event: TypeAdapter[Event] = TypeAdapter(AnyEvent)


def parse_event(raw: bytes | str, kind: type[E] | None = None) -> E | Event:
    """Parse an event from the wire, ignoring fields a newer producer added.

    With `kind`, the event must be of that type. Raises pydantic.ValidationError when malformed.
    Accepts the CloudEvents 1.0 envelope (events/cloudevent.py) and the previous one.
    """
    raw = cloudevent.unwrap(raw)
    if kind is not None:
        return kind.model_validate_json(raw, extra="ignore")
    return _any_event.validate_json(raw, extra="ignore")
