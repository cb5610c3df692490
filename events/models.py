"""Model events: a new immutable version registered, an alias moved."""

from __future__ import annotations

from typing import ClassVar, Literal

from . import subjects
from .envelope import Event, Name, Payload, Sha256


class ModelVersionRef(Payload):
    """A new immutable model version exists in the registry."""

    model_name: Name
    version: int
    uri: str
    sha256: Sha256
    job_id: str | None = None


class AliasMove(Payload):
    """An alias now points to a version."""

    model_name: Name
    alias: str
    version: int
    previous_version: int | None = None


class ModelPublished(Event):
    subject: ClassVar[str] = subjects.MODELS_PUBLISHED
    type: Literal["models.published"] = "models.published"
    data: ModelVersionRef


class ModelPromoted(Event):
    subject: ClassVar[str] = subjects.MODELS_PROMOTED
    type: Literal["models.promoted"] = "models.promoted"
    data: AliasMove
