"""Through a real nats-server: events go out as structured CloudEvents and come back as events."""

from __future__ import annotations

import json

import pytest

from fermion.events import Bus, DatasetRef, DatasetUploaded, parse_event

pytestmark = pytest.mark.integration


async def test_a_published_event_is_a_structured_cloudevent_on_the_stream(bus: Bus) -> None:
    ref = DatasetRef(name="ce-check", sha256="b" * 64, uri="file:///d", format="npz", size=1)
    event = DatasetUploaded(tenant="acme", data=ref)
    assert await bus.publish(event)
    [stored] = [m for m in await bus.history(event.subject) if m.headers.get("Nats-Msg-Id") == event.id]
    assert stored.headers["Content-Type"] == "application/cloudevents+json"
    body = json.loads(stored.data)
    assert (body["specversion"], body["type"], body["tenant"]) == ("1.0", "fermion.datasets.uploaded", "acme")
    assert parse_event(stored.data, DatasetUploaded) == event
