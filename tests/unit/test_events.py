import hashlib
import json

import pytest
from pydantic import ValidationError

from fermion.events import (
    DatasetRef,
    Recipe,
    TrainingRequest,
    TrainingRequested,
    derive_id,
    new_id,
    parse_event,
    subjects,
    upload_id,
)
from fermion.events.envelope import ID_MAX

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


@pytest.mark.parametrize(
    "hostile",
    [
        'a"onfocus="alert(1)"autofocus="',  # the console's attribute context
        "job with spaces",
        "a>",
        "a*",
        "a/b",
        ".hidden",
        "-flag",
        "a\nb",
        "a\x00b",
        "naïve",
        "x" * (ID_MAX + 1),
        "",
    ],
)
def test_hostile_event_ids_are_refused_at_parse(hostile: str) -> None:
    raw = json.loads(TrainingRequested(data=TrainingRequest(model_name="digits", dataset=DATASET)).to_json())
    raw["id"] = hostile
    with pytest.raises(ValidationError, match="id"):
        parse_event(json.dumps(raw), TrainingRequested)
    with pytest.raises(ValidationError):
        parse_event(json.dumps(raw))


def test_every_id_the_code_makes_is_accepted() -> None:
    sha = hashlib.sha256(b"x").hexdigest()
    made = [
        new_id(),
        "k" + sha[:31],  # functions/ingest/idempotency.py
        upload_id("t" * 63, "d" * 63, sha),  # an upload, at its longest
        f"{'r' * 63}.{sha[:40]}",  # an upload pipeline's job
        f"{'r' * 63}.drift.v12",  # a drift retrain's job
        "dlq.jobs.12345",
        derive_id(new_id(), "published", 7),
        derive_id(new_id(), 3),  # a sweep's trial
    ]
    for event_id in made:
        assert TrainingRequested(id=event_id, data=TrainingRequest(model_name="d", dataset=DATASET)).id == event_id


def test_derived_ids_stay_within_the_limit_and_are_stable() -> None:
    assert derive_id("abc", "completed", 4) == "abc.completed.4"
    assert upload_id("default", "digits", "ab" * 32) == "default.digits." + "ab" * 16  # as before, when it fits
    longest = "a" * ID_MAX
    derived = derive_id(longest, "failed", 123456789)
    assert len(derived) <= ID_MAX and derived.endswith(".failed.123456789")
    assert derived == derive_id(longest, "failed", 123456789)  # a redelivery derives the same id
    assert derive_id(derive_id(longest, 63), "published", 1) != derive_id(derive_id(longest, 62), "published", 1)
    TrainingRequested(id=derived, data=TrainingRequest(model_name="d", dataset=DATASET))
