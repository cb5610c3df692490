"""The envelope every event shares (id, time, tenant, schema version), the payload base, and the naming rule.

Producers are strict (unknown fields are refused when an event is built in code);
consumers are tolerant (unknown fields from a newer producer are ignored on parse: `schemas.parse_event`).
"""

from __future__ import annotations

import hashlib
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

ID_MAX = 128
ID_PATTERN = rf"^[A-Za-z0-9][A-Za-z0-9._-]{{0,{ID_MAX - 1}}}$"
"""Event ids: a letter or digit, then letters, digits, `.`, `_`, `-`; at most 128 characters. An id is a
NATS subject token (`training.cancel.<id>`), a Nats-Msg-Id, a store key part (`runs/.../<id>.json`) and
text in the console, so whitespace, `>`, `*`, `/`, quotes and control characters are refused at parse
(the consumer dead-letters the event with the reason). Every id the code makes fits: uuid hex, `k<hash>`,
`upload_id`, `<rule>.<sha>`, `<rule>.drift.v<n>`, and what `derive_id` makes."""

EventId = Annotated[str, Field(pattern=ID_PATTERN, min_length=1, max_length=ID_MAX)]


def new_id() -> str:
    """A fresh event id (also the JetStream Nats-Msg-Id)."""
    return uuid.uuid4().hex


def derive_id(base: str, *parts: object) -> str:
    """The id of an event that follows from event `base` (`<base>.<part>...`), always within `ID_MAX`.

    Deterministic, so a redelivery derives the same id and JetStream drops the duplicate; a base
    too long for its suffix is replaced by its hash.
    """
    suffix = ".".join(str(p) for p in parts)
    if len(base) + 1 + len(suffix) > ID_MAX:
        base = "h" + hashlib.sha256(base.encode()).hexdigest()[:39]
    return f"{base}.{suffix}"[:ID_MAX]


def upload_id(tenant: str, dataset: str, sha256: str) -> str:
    """The id of a dataset upload's event: the same content under the same name is the same upload."""
    return derive_id(f"{tenant}.{dataset}", sha256[:32])


def _now() -> datetime:
    return datetime.now(UTC)


class Payload(BaseModel):
    """Base of every event payload: strict when built, tolerant when parsed."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Event(BaseModel):
    """The envelope every event shares."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subject: ClassVar[str]

    id: EventId = Field(default_factory=new_id)
    time: datetime = Field(default_factory=_now)
    tenant: Name = "default"
    schema_version: int = 1

    def to_json(self) -> bytes:
        """The event as bytes for the wire."""
        return self.model_dump_json().encode()
