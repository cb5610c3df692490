"""Jobs are never lost and never done twice: kills, crash loops, duplicates and cancels, on a real nats-server.

Each test runs its own nats-server, store and trainer processes with a short ack_wait, so a killed
trainer's job is redelivered within seconds.
"""

from __future__ import annotations

import asyncio
import io
import os
import random
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from fermion.events import (
    Bus,
    CancelRequest,
    ConsumerPolicy,
    DatasetRef,
    Recipe,
    TrainingCancel,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequest,
    TrainingRequested,
    parse_event,
    streams,
)
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, Registry, StoreSettings, open_registry
from tests.helpers import Trainer, wait_until

pytestmark = pytest.mark.integration


@dataclass
class Fleet:
    """A nats-server, a store and trainer processes that a test may kill and restart."""

    nats: NatsServer
    env: dict[str, str]
    logs: Path
    trainers: list[Trainer]

    def spawn(self) -> Trainer:
        t = Trainer(self.env, self.logs / f"trainer-{len(self.trainers)}.log").start()
        self.trainers.append(t)
        return t

    def alive(self) -> list[Trainer]:
        return [t for t in self.trainers if t.proc and t.proc.poll() is None]

    @property
    def registry(self) -> Registry:
        return open_registry(StoreSettings(home=Path(self.env["FERMION_HOME"])))


@pytest.fixture
def fleet(tmp_path: Path, recipe_site: Path) -> Iterator[Fleet]:
    with NatsServer(tmp_path / "nats") as server:
        env = {
            **os.environ,
            "FERMION_HOME": str(tmp_path / "home"),
            "FERMION_NATS_URL": server.url,
            "FERMION_ACK_WAIT_S": "3",
            "FERMION_MAX_DELIVER": "3",
            "FERMION_RETRY_DELAY_S": "0.2",
            "PYTHONPATH": os.pathsep.join([str(recipe_site), os.environ.get("PYTHONPATH", "")]),
        }
        f = Fleet(server, env, tmp_path, [])
        try:
            yield f
        finally:
            for t in f.trainers:
                t.stop()
            f.nats.stop()  # a test may have restarted the server: stop the one running now


@pytest.fixture
async def fleet_bus(fleet: Fleet) -> AsyncIterator[Bus]:
    bus = await Bus.connect(fleet.nats.url)
    await bus.provision(ConsumerPolicy(ack_wait_s=3, max_deliver=3))
    yield bus
    await bus.close()


def _dataset(registry: Registry, seed: int = 0) -> DatasetRef:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, 120)
    x = (rng.normal(size=(120, 4)) + y[:, None] * 3).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    stored = DatasetStore(registry.store).put("default", "toy", buf.getvalue(), "npz")
    return DatasetRef(name="toy", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)


def _job(ref: DatasetRef, model: str = "toy", **recipe: object) -> TrainingRequested:
    return TrainingRequested(
        data=TrainingRequest(model_name=model, dataset=ref, recipe=Recipe(**{"epochs": 2, **recipe}))
    )  # type: ignore[arg-type]


async def _outcomes(bus: Bus, jobs: set[str], since: datetime, timeout_s: float) -> dict[str, list]:
    """training.completed / training.failed events per job, until every job has one (or the timeout)."""
    seen: dict[str, list] = {j: [] for j in jobs}
    events = bus.watch("fermion.training.>", since=since)
    try:
        async with asyncio.timeout(timeout_s):
            async for raw in events:
                event = parse_event(raw)
                if isinstance(event, TrainingCompleted | TrainingFailed) and event.data.job_id in seen:
                    seen[event.data.job_id].append(event)
                    if all(seen.values()):
                        return seen
    except TimeoutError:
        pass
    finally:
        await events.aclose()
    return seen


async def _drained(bus: Bus, timeout_s: float = 30.0) -> None:
    """Wait until the trainers' consumer has nothing left to deliver and nothing unacknowledged."""
    async with asyncio.timeout(timeout_s):
        while not (await bus.consumer_state(streams.TRAINER_DURABLE)).idle:
            await asyncio.sleep(0.05)


async def _dead_letters(bus: Bus) -> dict[str, dict[str, str]]:
    return {parse_event(m.data, TrainingRequested).id: m.headers for m in await bus.history("fermion.dlq.>")}


async def test_thirty_jobs_survive_random_sigkills_of_two_trainers(fleet: Fleet, fleet_bus: Bus) -> None:
    fleet.spawn(), fleet.spawn()
    ref = _dataset(fleet.registry)
    since = datetime.now(UTC) - timedelta(seconds=1)
    jobs = [_job(ref, model=f"m{i % 3}") for i in range(30)]
    for job in jobs:
        await fleet_bus.publish(job)
    rng = random.Random(7)
    kills = 0
    outcome_task = asyncio.create_task(_outcomes(fleet_bus, {j.id for j in jobs}, since, timeout_s=240))
    while kills < 6 and not outcome_task.done():
        await asyncio.sleep(rng.uniform(0.5, 2.0))
        if victims := fleet.alive():
            victim = rng.choice(victims)
            assert victim.proc is not None
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait()
            kills += 1
            fleet.spawn()
    outcomes = await outcome_task
    assert kills >= 5
    letters = await _dead_letters(fleet_bus)
    lost = [j for j, ends in outcomes.items() if not ends and j not in letters]
    assert not lost, f"{len(lost)} jobs neither finished nor dead-lettered"
    registry = fleet.registry
    per_event: dict[str, list[int]] = {}
    for name in ("m0", "m1", "m2"):
        for v in registry.versions("default", name):
            per_event.setdefault(registry.manifest("default", name, v).lineage.training_event_id or "", []).append(v)
    assert all(len(vs) == 1 for vs in per_event.values()), f"an event got two versions: {per_event}"
    completed = {j for j, ends in outcomes.items() if any(isinstance(e, TrainingCompleted) for e in ends)}
    assert completed <= set(per_event), "a job completed without its version in the registry"
    print(
        f"\nfault injection: {kills} SIGKILLs, {len(completed)} completed, {len(letters)} dead-lettered, "
        f"{sum(len(v) for v in per_event.values())} versions"
    )
    assert len(completed) + len(letters) >= 30


async def test_the_same_event_published_100_times_trains_once(fleet: Fleet, fleet_bus: Bus) -> None:
    fleet.spawn()
    job = _job(_dataset(fleet.registry))
    since = datetime.now(UTC) - timedelta(seconds=1)
    stored = [await fleet_bus.publish(job) for _ in range(100)]
    assert stored.count(True) == 1
    outcomes = await _outcomes(fleet_bus, {job.id}, since, timeout_s=60)
    await _drained(fleet_bus)  # whatever could have trained a second time has been delivered and settled
    again = await _outcomes(fleet_bus, {job.id}, since, timeout_s=2)
    assert len(outcomes[job.id]) == 1 and len(again[job.id]) == 1
    assert fleet.registry.versions("default", "toy") == [1]


async def test_a_crash_looping_job_is_dead_lettered_with_the_reason(fleet: Fleet, fleet_bus: Bus) -> None:
    fleet.spawn()
    job = _job(_dataset(fleet.registry), architecture="crash")
    since = datetime.now(UTC) - timedelta(seconds=1)
    await fleet_bus.publish(job)
    outcome = asyncio.create_task(_outcomes(fleet_bus, {job.id}, since, timeout_s=60))
    while not outcome.done():  # a supervisor: restart whatever the job killed
        if not fleet.alive():
            fleet.spawn()
        await asyncio.sleep(0.2)
    (failed,) = (await outcome)[job.id]
    assert isinstance(failed, TrainingFailed) and "ran out of deliveries (3)" in failed.data.reason
    letters = await _dead_letters(fleet_bus)
    assert "ran out of deliveries" in letters[job.id]["Fermion-Reason"]
    assert letters[job.id]["Fermion-Deliveries"] == "3"
    assert fleet.registry.versions("default", "toy") == []


async def test_cancel_before_start_and_while_training(fleet: Fleet, fleet_bus: Bus) -> None:
    ref = _dataset(fleet.registry)
    early = _job(ref)
    await fleet_bus.publish(TrainingCancel(data=CancelRequest(job_id=early.id)))
    since = datetime.now(UTC) - timedelta(seconds=1)
    await fleet_bus.publish(early)
    fleet.spawn()
    (ended,) = (await _outcomes(fleet_bus, {early.id}, since, timeout_s=60))[early.id]
    assert isinstance(ended, TrainingFailed) and "cancelled before it started" in ended.data.reason

    long = _job(ref, epochs=1000)
    since = datetime.now(UTC) - timedelta(seconds=1)
    await fleet_bus.publish(long)
    events = fleet_bus.watch("fermion.training.progress", since=since)
    async with asyncio.timeout(60):
        async for raw in events:  # a trained epoch, not the epoch-0 "started" report sent before training
            progress = parse_event(raw, TrainingProgress)
            if progress.data.job_id == long.id and progress.data.epoch >= 1:  # type: ignore[attr-defined]
                break
    await events.aclose()
    await fleet_bus.publish(TrainingCancel(data=CancelRequest(job_id=long.id)))
    (ended,) = (await _outcomes(fleet_bus, {long.id}, since, timeout_s=60))[long.id]
    assert isinstance(ended, TrainingFailed) and "cancelled after epoch" in ended.data.reason
    assert fleet.registry.versions("default", "toy") == []
    assert long.id not in await _dead_letters(fleet_bus)  # a cancel is not a failure to investigate


async def test_a_nats_restart_mid_job_is_survived(fleet: Fleet, tmp_path: Path) -> None:
    fleet.spawn()
    ref = _dataset(fleet.registry)
    job = _job(ref, epochs=400)  # a few seconds of training
    bus = await Bus.connect(fleet.nats.url)
    since = datetime.now(UTC) - timedelta(seconds=1)
    try:
        await bus.provision(ConsumerPolicy(ack_wait_s=3, max_deliver=3))
        await bus.publish(job)
        events = bus.watch("fermion.training.progress", since=since)
        async with asyncio.timeout(60):
            async for raw in events:
                if parse_event(raw).data.job_id == job.id:  # type: ignore[attr-defined]
                    break
        await events.aclose()
    finally:
        await bus.close()
    port = fleet.nats.port
    fleet.nats.stop()  # mid-job: the trainer loses its connection
    (trainer,) = fleet.trainers
    await asyncio.to_thread(
        wait_until, lambda: "disconnected from NATS" in trainer.log.read_text(errors="replace"), 30, "the disconnect"
    )
    fleet.nats = NatsServer(fleet.nats.store_dir, port=port).start()  # same store, same port
    bus = await Bus.connect(fleet.nats.url)
    try:
        (ended,) = (await _outcomes(bus, {job.id}, since, timeout_s=90))[job.id]
    finally:
        await bus.close()
    assert isinstance(ended, TrainingCompleted), ended
    assert fleet.registry.versions("default", "toy") == [ended.data.version]
    assert fleet.alive(), "the trainer died instead of reconnecting"
