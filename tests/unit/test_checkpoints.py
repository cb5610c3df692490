"""Checkpoints: create-only per epoch, a pointer that only moves forward, damage detected, retention,
and a training resumed from its checkpoint that ends exactly where an uninterrupted one does."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from fermion.events import ProgressReport, Recipe, StoredMessage, TrainingProgress
from fermion.model_store import LocalDirStore, Registry
from fermion.model_store.checkpoints import POINTER, CheckpointStore
from fermion.service.jobs import job_statuses
from fermion.training.checkpoints import Checkpointer, CheckpointPolicy
from fermion.training.data import Dataset
from fermion.training.loop import train


def test_the_pointer_moves_forward_only_and_damage_falls_back(registry: Registry) -> None:
    cps = CheckpointStore(registry.store)
    assert cps.latest("default", "job-1") is None
    assert cps.save("default", "job-1", 2, b"two").pointer_moved
    assert cps.save("default", "job-1", 4, b"four").pointer_moved
    assert not cps.save("default", "job-1", 3, b"three, late").pointer_moved  # a late writer never moves it back
    found = cps.latest("default", "job-1")
    assert found is not None and (found.epoch, found.body) == (4, b"four")
    # The same epoch again (an earlier delivery wrote it) keeps the sound object: create-only.
    cps.save("default", "job-1", 4, b"four again")
    assert cps.latest("default", "job-1").body == b"four"  # type: ignore[union-attr]
    # A damaged newest checkpoint is skipped for the newest sound one.
    key = found.key
    data, _ = registry.store.get(key)
    registry.store.delete(key)
    registry.store.put(key, data[:-2] + b"XX")
    again = cps.latest("default", "job-1")
    assert again is not None and (again.epoch, again.body) == (3, b"three, late")


def test_a_checkpoint_written_after_the_pointer_is_found(registry: Registry, tmp_path: Path) -> None:
    cps = CheckpointStore(registry.store)
    cps.save("default", "job-2", 1, b"one")
    # A crash between the create-only write and the pointer's move: the object exists, the pointer lags.
    registry.store.put("checkpoints/default/job-2/epoch-000002.ckpt", _framed(tmp_path, 2, b"two"), if_none_match=True)
    found = cps.latest("default", "job-2")
    assert found is not None and found.epoch == 2


def _framed(tmp: Path, epoch: int, body: bytes) -> bytes:
    store = LocalDirStore(tmp / "framing")
    CheckpointStore(store).save("default", "x", epoch, body)
    return store.get(f"checkpoints/default/x/epoch-{epoch:06d}.ckpt")[0]


def test_prune_keeps_the_newest_and_retention_deletes_finished_and_abandoned(registry: Registry) -> None:
    cps = CheckpointStore(registry.store)
    for epoch in range(1, 6):
        cps.save("default", "done", epoch, b"x" * epoch)
    assert len(cps.prune("default", "done", keep_last=2)) == 3
    assert sorted(registry.store.children("checkpoints/default/done/")) == [
        "epoch-000004.ckpt",
        "epoch-000005.ckpt",
        POINTER,
    ]
    cps.save("default", "running", 1, b"r")
    cps.finish("default", "done")
    assert cps.expire("default", finished_after_s=3600, abandoned_after_s=3600) == []
    assert cps.expire("default", finished_after_s=0, abandoned_after_s=3600) == ["done"]
    assert list(registry.store.list("checkpoints/default/done/")) == []
    assert cps.latest("default", "running") is not None  # a running job's checkpoints stay
    assert cps.expire("default", finished_after_s=0, abandoned_after_s=0) == ["running"]


def _digits_like(n: int = 400, seed: int = 0) -> Dataset:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = (rng.normal(size=(n, 16)) + y[:, None] * 0.8).astype(np.float32)
    return Dataset(x, y, ["a", "b", "c", "d"])


class Killed(Exception):
    pass


def test_a_training_resumed_from_its_checkpoint_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    ds, recipe = _digits_like(), Recipe(architecture="mlp", epochs=6, learning_rate=3e-3, seed=3)
    whole = train(ds, recipe)
    store = LocalDirStore(tmp_path / "store")
    policy = CheckpointPolicy(every_epochs=2, every_s=3600)

    def die_at_5(epoch: int, epochs: int, loss: float, metrics: dict[str, float], **extra: object) -> None:
        if epoch == 5:
            raise Killed

    with pytest.raises(Killed):
        train(ds, recipe, die_at_5, Checkpointer.open(store, "default", "job", policy))
    seen: list[tuple[int, dict[str, object]]] = []
    resumed = train(
        ds,
        recipe,
        lambda epoch, epochs, loss, metrics, **extra: seen.append((epoch, extra)),
        Checkpointer.open(store, "default", "job", policy),
    )
    assert seen[0][0] == 4 and seen[0][1]["resumed_at"] == 4  # the report that says where it resumed
    assert [e for e, _ in seen[1:]] == [5, 6]  # epochs 1-4 are not trained again
    assert resumed.metrics == whole.metrics
    pointer = CheckpointStore(store).pointer("default", "job")  # what a watcher on a cluster follows
    assert pointer is not None and pointer["epoch"] == 6 and pointer["meta"]["metrics"] == whole.metrics
    for name, value in whole.module.state_dict().items():
        torch.testing.assert_close(resumed.module.state_dict()[name], value, msg=name)


def test_the_job_record_shows_workers_restarts_resumes_and_per_rank_throughput() -> None:
    def progress(epoch: int, **extra: Any) -> StoredMessage:
        report = ProgressReport(job_id="j", model_name="m", epoch=epoch, epochs=6, loss=0.5, **extra)
        return StoredMessage(epoch, "fermion.training.progress", TrainingProgress(data=report).to_json(), {})

    log = [
        progress(1, workers=2, restarts=0, samples_per_s=[900.0, 880.0]),
        progress(2, workers=2, restarts=1, resumed_at=2),
        progress(3, workers=2, restarts=1, samples_per_s=[910.0, 905.5]),
    ]
    (job,) = job_statuses([], log).values()
    assert (job.workers, job.restarts, job.resumed_at, job.samples_per_s) == (2, 1, [2], [910.0, 905.5])
