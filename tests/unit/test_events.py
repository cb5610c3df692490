import json

import pytest
from pydantic import ValidationError

from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested, parse_event, subjects

DATASET = DatasetRef(name="digits", sha256="a" * 64, uri="file:///x", format="npz", size=10)


def test_event_round_trips_with_its_envelope() -> None:
    event = TrainingRequested(tenant="acme", data=TrainingRequest(model_name="digits", dataset=DATASET))
    parsed = parse_event(event.to_json())
    assert parsed == event
    assert parsed.type == "training.requested"
    assert parsed.schema_version == 1
    assert event.subject == subjects.TRAINING_REQUESTED


def test_consumers_ignore_fields_a_newer_producer_added() -> None:
    event = TrainingRequested(data=TrainingRequest(model_name="digits", dataset=DATASET))
    raw = json.loads(event.to_json())
    raw["added_later"] = 1
    raw["data"]["recipe"]["new_knob"] = "x"
    parsed = parse_event(json.dumps(raw), TrainingRequested)
    assert parsed.id == event.id
    assert parsed.data.recipe == Recipe()


def test_producers_are_strict() -> None:
    with pytest.raises(ValidationError, match="typo"):
        Recipe(typo=1)  # type: ignore[call-arg]


@pytest.mark.parametrize("name", ["../etc", "a/b", "", "UPPER", "x" * 64])
def test_names_that_could_escape_a_prefix_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        TrainingRequest(model_name=name, dataset=DATASET)


def test_dead_letter_subjects_mirror_the_original() -> None:
    assert subjects.dead_letter(subjects.TRAINING_REQUESTED) == "fermion.dlq.training.requested"
