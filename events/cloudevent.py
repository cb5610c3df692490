"""CloudEvents 1.0 structured JSON envelope for published events, and reading either envelope.

Mapping (Fermion event -> CloudEvent attribute):

    id              -> id
    "/fermion"      -> source
    type            -> type, prefixed: "fermion." + type (e.g. fermion.training.requested)
    time            -> time (RFC 3339)
    payload `data`  -> data, with datacontenttype "application/json"
    tenant          -> tenant (extension attribute)
    schema_version  -> schemaversion (extension attribute)

Knative Eventing and EventBridge carry such events unchanged. During one release consumers accept
both this envelope and the previous one (Fermion's own `{id, type, time, tenant, data}`).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from .envelope import Event

SOURCE = "/fermion"
TYPE_PREFIX = "fermion."
CONTENT_TYPE = "application/cloudevents+json"
HEADERS = {"Content-Type": CONTENT_TYPE}
"""NATS headers of a published event: structured content mode (the CloudEvents NATS binding)."""


class CloudEvent(BaseModel):
    """A CloudEvents 1.0 event in structured JSON mode, with Fermion's two extension attributes."""

    model_config = ConfigDict(extra="allow", frozen=True)

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1)
    source: str = Field(min_length=1)
    type: str = Field(min_length=1)
    time: datetime | None = None
    datacontenttype: str = "application/json"
    data: Any = None
    tenant: str = "default"
    schemaversion: int = 1


def encode(event: Event) -> bytes:
    """`event` as a structured CloudEvent, for the wire."""
    fields = event.model_dump(mode="json")
    envelope = CloudEvent(
        id=fields["id"],
        source=SOURCE,
        type=TYPE_PREFIX + fields["type"],
        time=event.time,
        data=fields["data"],
        tenant=fields["tenant"],
        schemaversion=fields["schema_version"],
    )
    return envelope.model_dump_json().encode()


def unwrap(raw: bytes | str) -> bytes | str:
    """The event in Fermion's own envelope: a CloudEvent is mapped back, anything else is returned as is."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for json (pydantic's parse says so)
        return raw  # the schema's parse reports what is wrong with it
    if not isinstance(doc, dict) or "specversion" not in doc:
        return raw
    ce = CloudEvent.model_validate(doc)
    own = {
        "id": ce.id,
        "type": ce.type.removeprefix(TYPE_PREFIX),
        "tenant": ce.tenant,
        "schema_version": ce.schemaversion,
        "data": ce.data,
    }
    if ce.time is not None:
        own["time"] = ce.time.isoformat()
    return json.dumps(own)
