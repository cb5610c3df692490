"""What a training job keeps for evaluation (issue 27): the manifest's confusion matrix and per-class
scores, and the run record's validation loss per epoch and its sweep."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from fermion.events import DatasetRef, Recipe, TrainingRequest, TrainingRequested
from fermion.functions.trainer.history import JobRun
from fermion.functions.trainer.job import run_job
from fermion.model_store import DatasetStore, Runs, StoreSettings, open_registry

pytestmark = pytest.mark.integration


def test_a_job_stores_its_confusion_matrix_per_class_scores_and_validation_loss(tmp_path: Path) -> None:
    registry = open_registry(StoreSettings(home=tmp_path))
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    buf = io.BytesIO()
    np.savez(buf, x=(rng.normal(size=(150, 4)) + y[:, None] * 3).astype(np.float32), y=y)
    stored = DatasetStore(registry.store).put("default", "blobs", buf.getvalue(), "npz")
    ref = DatasetRef(name="blobs", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    request = TrainingRequest(model_name="blobs", dataset=ref, recipe=Recipe(epochs=3), sweep="sweep-1")
    event = TrainingRequested(data=request)
    history = JobRun(Runs(registry.store), event, 1)

    def on_epoch(epoch: int, epochs: int, loss: float, metrics: dict[str, float], **extra: Any) -> None:
        history.epoch(epoch, loss, metrics, 0.01, extra.get("val_loss"))

    manifest = run_job(event, registry, on_epoch=on_epoch)
    history.completed(manifest)

    ev = manifest.evaluation
    assert ev is not None and ev["labels"] == manifest.labels
    cm = np.array(ev["confusion"])
    assert cm.shape == (3, 3) and np.trace(cm) / cm.sum() == pytest.approx(manifest.metrics["accuracy"])
    assert {c["label"] for c in ev["per_class"]} == set(manifest.labels)
    assert all({"precision", "recall", "f1", "support"} <= set(c) for c in ev["per_class"])
    again = registry.manifest("default", "blobs", manifest.version)  # kept in the stored manifest
    assert again.evaluation == ev

    record = Runs(registry.store).get("default", event.id)
    assert record.sweep == "sweep-1"
    assert [e.epoch for e in record.epochs] == [1, 2, 3]
    assert all(e.val_loss is not None and e.val_loss > 0 for e in record.epochs)
    assert all({"accuracy", "macro_f1"} <= set(e.metrics) for e in record.epochs)
