"""Finding the version an earlier delivery of the same training event registered."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fermion.events import DatasetRef, TrainingRequest, TrainingRequested
from fermion.functions.trainer.job import CLOCK_SKEW, find_registered
from fermion.model_store import Lineage, LocalDirStore, Registry
from tests.conftest import linear_draft, linear_onnx


def _event(event_id: str, at: datetime) -> TrainingRequested:
    ref = DatasetRef(name="toy", sha256="0" * 64, uri="file:///toy.npz", format="npz", size=1)
    return TrainingRequested(id=event_id, time=at, data=TrainingRequest(model_name="lin", dataset=ref))


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    for i in range(6):
        lineage = Lineage(training_event_id=f"job-{i}")
        registry.register("default", "lin", {"model.onnx": linear_onnx(seed=i)}, linear_draft(lineage=lineage))
    return registry


def _reads(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    read: list[int] = []
    manifest = registry.manifest

    def counting(tenant: str, name: str, version: int):  # type: ignore[no-untyped-def]
        read.append(version)
        return manifest(tenant, name, version)

    monkeypatch.setattr(registry, "manifest", counting)
    return read


def test_a_redelivered_event_finds_its_version(registry: Registry) -> None:
    found = find_registered(registry, _event("job-2", datetime.now(UTC)))
    assert found is not None and found.version == 3


def test_the_search_stops_at_versions_older_than_the_event(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    read = _reads(registry, monkeypatch)
    later = datetime.now(UTC) + CLOCK_SKEW + timedelta(minutes=1)  # every version predates this event
    assert find_registered(registry, _event("job-new", later)) is None
    assert read == [6]  # the newest version was written before the event existed: nothing older can be its
    read.clear()
    assert find_registered(registry, _event("job-new", datetime.now(UTC))) is None
    assert read == [6, 5, 4, 3, 2, 1]  # within the clock skew every version is a candidate
