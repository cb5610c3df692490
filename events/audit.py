"""The audit trail's event: who did (or was refused) what."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from . import subjects
from .envelope import Event, Payload


class AuditRecord(Payload):
    """Who did (or was refused) what: alias moves, key creation and revocation, refused requests."""

    action: Literal["alias.moved", "alias.deleted", "key.created", "key.revoked", "request.refused"]
    principal: str
    """The acting key's id (never the key), or "local" where authentication is off."""
    principal_tenant: str
    target: str
    """What it acted on: `model@alias`, a key id, a route."""
    outcome: Literal["done", "refused"] = "done"
    reason: str = ""
    details: dict[str, str | int | None] = Field(default={})


class AuditEvent(Event):
    type: Literal["audit"] = "audit"
    data: AuditRecord

    @property
    def subject(self) -> str:  # type: ignore[override]
        return subjects.audit(self.data.action)
