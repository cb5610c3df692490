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


NAMES = ["a", "digits", "a.b", "a.b.c", "a-b_c", "v1.", "9", "a" * 63]
NOT_NAMES = ["", "a..b", "..", "a..", ".a", "-a", "A", "a/b", "a b", "a" * 64, "é"]


@pytest.mark.parametrize("name", NAMES + NOT_NAMES)
def test_events_and_the_registry_hold_names_to_one_rule(name: str) -> None:
    from pydantic import TypeAdapter

    from fermion.events.envelope import Name
    from fermion.model_store import InvalidName, check_name

    try:
        TypeAdapter(Name).validate_python(name)
        at_the_door = True
    except ValidationError:
        at_the_door = False
    try:
        check_name("model", name)
        in_the_store = True
    except InvalidName:
        in_the_store = False
    assert at_the_door == in_the_store == (name in NAMES)
