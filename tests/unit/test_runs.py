"""Run records in a real local store: written, read back, listed newest first; quick with hundreds."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from fermion.model_store import EpochRecord, LocalDirStore, RunNotFound, RunRecord, Runs


def _record(i: int, model: str = "m") -> RunRecord:
    return RunRecord(
        job_id=f"job-{i:04d}",
        tenant="default",
        model_name=model,
        started=datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=i),
        parameters={"epochs": 3, "learning_rate": 0.01 * (i + 1)},
        epochs=[EpochRecord(epoch=e, loss=1.0 / e, metrics={"accuracy": 0.5 + e / 10}) for e in (1, 2, 3)],
    )


def test_hundreds_of_runs_list_newest_first_quickly(tmp_path: Path) -> None:
    runs = Runs(LocalDirStore(tmp_path / "store"))
    for i in range(300):
        runs.put(_record(i, model="a" if i % 2 else "b"))
    started = time.perf_counter()
    listed = runs.list("default")
    assert time.perf_counter() - started < 5.0
    assert [r.job_id for r in listed[:2]] == ["job-0299", "job-0298"] and len(listed) == 300
    assert len(runs.list("default", "a")) == 150 and len(runs.list("default", limit=10)) == 10
    assert runs.get("default", "job-0007").parameters["learning_rate"] == pytest.approx(0.08)
    assert runs.get("default", "job-0007", "a").model_name == "a"
    with pytest.raises(RunNotFound):
        runs.get("default", "job-9999")
    with pytest.raises(RunNotFound):
        runs.get("other", "job-0007")  # another tenant's run is not found
    with pytest.raises(RunNotFound):
        runs.get("default", "../keys/x")
