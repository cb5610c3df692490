"""The envelope every event shares (id, time, tenant, schema version), the payload base, and the naming rule.

Producers are strict (unknown fields are refused when an event is built in code);
consumers are tolerant (unknown fields from a newer producer are ignored on parse: `schemas.parse_event`).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, ClassVar

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9](?:[a-z0-9_-]|\.[a-z0-9_-])*\.?$"
"""Tenant, dataset and model names: lower-case, no slashes, no `..` (every dot is followed by another
character or ends the name), at most 63 characters. The registry holds paths to the same rule
(`fermion.model_store.check_name`); a test keeps the two in step."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=63)]
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


def new_id() -> str:
    """A fresh event id (also the JetStream Nats-Msg-Id)."""
    return uuid.uuid4().hex


def _now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every event payload: strict when built, tolerant when parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(BaseModel):
    """The envelope every event shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: ClassVar[str]

    id: str = Field(default_factory=new_id, min_length=1, max_length=64)
    time: datetime = Field(default_factory=_now)
    tenant: Name = "default"
    schema_version: int = 1

    def to_json(self) -> bytes:
        """The event as bytes for the wire."""
        return self.model_dump_json().encode()
