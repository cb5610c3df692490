"""Published events are CloudEvents 1.0 (structured JSON); consumers read both envelopes."""

from __future__ import annotations

import json

import pydantic
import pytest

from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested, parse_event
from fermion.events.cloudevent import encode

SHA = "a" * 64


def _event() -> TrainingRequested:
    ds = DatasetRef(name="iris", sha256=SHA, uri="file:///x", format="csv", size=3)
    return TrainingRequested(tenant="acme", data=TrainingRequest(model_name="iris", dataset=ds, recipe=Recipe()))


def test_published_envelope_has_every_required_cloudevents_attribute() -> None:
    event = _event()
    ce = json.loads(encode(event))
    assert ce["specversion"] == "1.0"
    assert ce["id"] == event.id
    assert ce["source"] == "/fermion"
    assert ce["type"] == "fermion.training.requested"
    assert ce["datacontenttype"] == "application/json"
    assert ce["tenant"] == "acme"
    assert ce["schemaversion"] == 1
    assert ce["data"]["model_name"] == "iris"
    assert ce["time"].startswith(event.time.isoformat()[:19])
    # Extension attribute names: lower-case letters and digits only (CloudEvents 1.0, section 3.1.1).
    assert all(k.isalnum() and k.islower() for k in ce)


def test_both_envelopes_parse_to_the_same_event() -> None:
    event = _event()
    assert parse_event(encode(event)) == event
    assert parse_event(event.to_json()) == event
    assert parse_event(encode(event), TrainingRequested) == event


def test_a_cloudevent_of_an_unknown_type_or_without_an_id_is_refused() -> None:
    ce = json.loads(encode(_event()))
    with pytest.raises(pydantic.ValidationError):
        parse_event(json.dumps(ce | {"type": "fermion.nothing.happened"}))
    with pytest.raises(pydantic.ValidationError):
        parse_event(json.dumps({k: v for k, v in ce.items() if k != "id"}))
