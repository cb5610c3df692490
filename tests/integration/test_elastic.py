"""Trainings that outgrow one process, on a real nats-server with real trainer processes: a SIGKILLed
trainer's job resumes from its checkpoint, a 2-worker job learns what a 1-worker job learns, and a
killed rank is restarted by torch's elastic agent from the checkpoint."""

from __future__ import annotations

import asyncio
import io
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from fermion.events import (
    Bus,
    ConsumerPolicy,
    DatasetRef,
    Event,
    Recipe,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequest,
    TrainingRequested,
    parse_event,
)
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, Registry, StoreSettings, open_registry
from fermion.training.data import Dataset
from fermion.training.loop import train
from tests.helpers import Trainer

pytestmark = pytest.mark.integration

RECIPE = Recipe(architecture="cnn", epochs=20, learning_rate=1e-3, seed=1)


@dataclass
class Site:
    nats: NatsServer
    env: dict[str, str]
    logs: Path
    trainers: list[Trainer]

    def spawn(self) -> Trainer:
        t = Trainer(self.env, self.logs / f"trainer-{len(self.trainers)}.log").start()
        self.trainers.append(t)
        return t

    @property
    def registry(self) -> Registry:
        return open_registry(StoreSettings(home=Path(self.env["FERMION_HOME"])))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    root = tmp_path_factory.mktemp("elastic")
    with NatsServer(root / "nats") as server:
        env = {
            **os.environ,
            "FERMION_HOME": str(root / "home"),
            "FERMION_NATS_URL": server.url,
            "FERMION_ACK_WAIT_S": "3",  # a killed trainer's job is redelivered within seconds
            "FERMION_MAX_DELIVER": "3",
            "FERMION_RETRY_DELAY_S": "0.2",
            "FERMION_CHECKPOINT_EVERY_EPOCHS": "2",
            "FERMION_CHECKPOINT_FINISHED_TTL_S": "0",  # the retention rule deletes a finished job's at once
            "PYTHONUNBUFFERED": "1",
            # One thread per process: on a shared 2-core machine, spinning OpenMP threads slow torch 4x.
            "OMP_NUM_THREADS": "1",
        }
        yield Site(server, env, root, [])


@pytest.fixture
async def site_bus(site: Site) -> AsyncIterator[Bus]:
    bus = await Bus.connect(site.nats.url)
    await bus.provision(ConsumerPolicy(ack_wait_s=3, max_deliver=3))
    yield bus
    await bus.close()
    for t in site.trainers:
        t.stop()
    site.trainers.clear()


@pytest.fixture(scope="module")
def digits() -> Dataset:
    d = load_digits()
    return Dataset(d.data.astype(np.float32), d.target.astype(np.int64), [str(c) for c in range(10)])


@pytest.fixture(scope="module")
def reference(digits: Dataset) -> float:
    """Held-out accuracy of an uninterrupted single-process run of RECIPE."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train(digits, RECIPE).metrics["accuracy"]
    finally:
        torch.set_num_threads(threads)


def _upload(registry: Registry, ds: Dataset) -> DatasetRef:
    buf = io.BytesIO()
    np.savez(buf, x=ds.x, y=ds.y)
    stored = DatasetStore(registry.store).put("default", "digits", buf.getvalue(), "npz")
    return DatasetRef(name="digits", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)


def _job(ref: DatasetRef, model: str, **recipe: object) -> TrainingRequested:
    return TrainingRequested(
        data=TrainingRequest(model_name=model, dataset=ref, recipe=RECIPE.model_copy(update=recipe))
    )


class Events:
    """A job's training.* events as they arrive, for tests to wait on."""

    def __init__(self, bus: Bus, job_ids: set[str], since: datetime) -> None:
        self.seen: dict[str, list[Event]] = {j: [] for j in job_ids}
        self._events = bus.watch("fermion.training.>", since=since)

    async def until(self, job_id: str, condition: type[Event] | int, timeout_s: float = 150) -> Event:
        """The first event of `job_id` that is of a type, or a progress report of at least that epoch."""
        for e in self.seen[job_id]:
            if self._matches(e, condition):
                return e
        async with asyncio.timeout(timeout_s):
            async for raw in self._events:
                event = parse_event(raw)
                job = getattr(event.data, "job_id", None)
                if job in self.seen:
                    self.seen[job].append(event)
                    if isinstance(event, TrainingFailed) and job == job_id:
                        pytest.fail(f"job failed: {event.data.reason}")
                    if job == job_id and self._matches(event, condition):
                        return event
        raise AssertionError("unreachable")

    @staticmethod
    def _matches(event: Event, condition: type[Event] | int) -> bool:
        if isinstance(condition, int):
            return isinstance(event, TrainingProgress) and event.data.loss is not None and event.data.epoch >= condition
        return isinstance(event, condition)

    def progress(self, job_id: str) -> list[TrainingProgress]:
        return [e for e in self.seen[job_id] if isinstance(e, TrainingProgress)]

    async def close(self) -> None:
        await self._events.aclose()


def _kill(trainer: Trainer) -> None:
    assert trainer.proc is not None
    trainer.proc.send_signal(signal.SIGKILL)
    trainer.proc.wait()


def _ranks_of(job_id: str) -> dict[int, int]:
    """pid by local rank of the job's rank processes (torchrun names its run after the job)."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        env = dict(e.decode(errors="replace").partition("=")[::2] for e in environ if b"=" in e)
        if env.get("TORCHELASTIC_RUN_ID") == job_id[:32] and "LOCAL_RANK" in env:
            found[int(env["LOCAL_RANK"])] = int(pid)
    return found


@pytest.mark.timeout(180)
async def test_a_sigkilled_trainer_resumes_from_its_checkpoint(
    site: Site, site_bus: Bus, digits: Dataset, reference: float
) -> None:
    job = _job(_upload(site.registry, digits), "digits-resumed")
    events = Events(site_bus, {job.id}, datetime.now(UTC) - timedelta(seconds=1))
    first = site.spawn()
    await site_bus.publish(job)
    await events.until(job.id, 10)
    _kill(first)
    site.spawn()
    done = await events.until(job.id, TrainingCompleted)
    await events.close()

    progress = events.progress(job.id)
    resumed = [p.data.resumed_at for p in progress if p.data.resumed_at is not None]
    assert len(resumed) == 1 and resumed[0] >= 10, [p.data for p in progress]
    trained = [p for p in progress if p.data.loss is not None and p.data.resumed_at is None]
    assert len(trained) <= 20 + 2, f"{len(trained)} epochs trained for a 20-epoch job with checkpoints every 2"
    assert trained[-1].data.epoch == 20
    assert isinstance(done, TrainingCompleted)
    registry = site.registry
    assert registry.versions("default", "digits-resumed") == [done.data.version]
    accuracy = registry.manifest("default", "digits-resumed", done.data.version).metrics["accuracy"]
    assert abs(accuracy - reference) <= 0.01, (accuracy, reference)
    # The retention rule (0 s after finishing, here) left nothing of the finished job behind.
    assert [k for k in registry.store.list("checkpoints/default/") if job.id in k] == []


@pytest.mark.timeout(180)
async def test_two_workers_learn_what_one_does_and_the_record_shows_them(
    site: Site, site_bus: Bus, digits: Dataset, reference: float
) -> None:
    job = _job(_upload(site.registry, digits), "digits-ddp", workers=2)
    events = Events(site_bus, {job.id}, datetime.now(UTC) - timedelta(seconds=1))
    site.spawn()
    await site_bus.publish(job)
    done = await events.until(job.id, TrainingCompleted)
    await events.close()

    assert isinstance(done, TrainingCompleted)
    assert abs(done.data.metrics["accuracy"] - reference) <= 0.01, (done.data.metrics, reference)
    assert site.registry.versions("default", "digits-ddp") == [done.data.version]
    epochs = [p.data for p in events.progress(job.id) if p.data.loss is not None and p.data.resumed_at is None]
    assert [p.epoch for p in epochs] == list(range(1, 21))
    assert all(p.workers == 2 and len(p.samples_per_s) == 2 and min(p.samples_per_s) > 0 for p in epochs)
    assert all(p.restarts == 0 for p in epochs)


@pytest.mark.timeout(240)  # three launches of a 2-rank group on a shared 2-core machine
async def test_a_killed_rank_restarts_the_group_and_a_killed_trainer_leaves_no_rank_behind(
    site: Site, site_bus: Bus, digits: Dataset
) -> None:
    job = _job(_upload(site.registry, digits), "digits-rank-killed", workers=2, epochs=8)
    events = Events(site_bus, {job.id}, datetime.now(UTC) - timedelta(seconds=1))
    first = site.spawn()
    await site_bus.publish(job)
    await events.until(job.id, 2)
    ranks = _ranks_of(job.id)
    assert set(ranks) == {0, 1}, ranks
    os.kill(ranks[1], signal.SIGKILL)  # the elastic agent restarts the group from the checkpoint
    await events.until(job.id, 5)
    _kill(first)  # the trainer that launched the group: its launcher and ranks die with it
    async with asyncio.timeout(30):
        while _ranks_of(job.id):
            await asyncio.sleep(0.1)
    site.spawn()  # the redelivered job resumes from the checkpoint
    done = await events.until(job.id, TrainingCompleted)
    await events.close()

    assert isinstance(done, TrainingCompleted)
    progress = [p.data for p in events.progress(job.id)]
    resumed = [p.resumed_at for p in progress if p.resumed_at is not None]
    assert len(resumed) >= 2 and resumed[-1] >= 4, progress  # after the restart, then after the redelivery
    assert max(p.restarts or 0 for p in progress) >= 1
    assert site.registry.versions("default", "digits-rank-killed") == [done.data.version]
    assert done.data.metrics["accuracy"] >= 0.95, done.data.metrics
    assert _ranks_of(job.id) == {}, "ranks outlived their job"
