"""A job that kills its worker on every delivery is dead-lettered and reported, not kept for ever:
trainings, batch scorings and federations alike (service/reaper.py).

A real nats-server with `fermion up`'s users and grants: each reaper runs as the role that runs it
in production (the trainer, for all three kinds). The dying worker is what JetStream sees of one: a
pull from the job's consumer that is never acknowledged, until the consumer's deliveries run out.
tests/integration/test_faults.py holds the trainers to the same with real trainer processes killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import nats
import pytest

from fermion.events import (
    Bus,
    ConsumerPolicy,
    DatasetRef,
    Event,
    Recipe,
    ScoringFailed,
    ScoringRequest,
    ScoringRequested,
    TrainingFailed,
    TrainingRequest,
    TrainingRequested,
    parse_event,
    streams,
    subjects,
)
from fermion.events.connection import nats_options
from fermion.events.federation import FederationFailed, FederationMember, FederationRequested, FederationSpec
from fermion.functions.trainer.reaper import FEDERATIONS, SCORINGS, TRAININGS
from fermion.functions.trainer.scoring import Scorer
from fermion.functions.trainer.settings import TrainerSettings
from fermion.functions.trainer.worker import Worker
from fermion.infra import NatsServer
from fermion.infra.identity import LocalIdentity
from fermion.model_store import LocalDirStore, Registry
from fermion.service.reaper import Jobs, Reaper

pytestmark = pytest.mark.integration

ACK_WAIT_S, MAX_DELIVER = 1.0, 2
DATASET = DatasetRef(name="big", sha256="0" * 64, uri="datasets/default/big.csv", format="csv", size=10)


@dataclass(frozen=True)
class Kind:
    """A kind of job: its reaper's `Jobs`, a job of it, and its failure event's subject and job id."""

    jobs: Jobs
    job: Event
    failed: str

    def job_id(self, failure: Event) -> str:
        data = failure.data  # type: ignore[attr-defined]
        return str(getattr(data, "job_id", None) or getattr(data, "federation_id", ""))


KINDS = {
    "training": Kind(
        TRAININGS,
        TrainingRequested(data=TrainingRequest(model_name="churn", dataset=DATASET, recipe=Recipe())),
        subjects.TRAINING_FAILED,
    ),
    "scoring": Kind(
        SCORINGS,
        ScoringRequested(data=ScoringRequest(model_name="churn", version=1, dataset=DATASET)),
        subjects.SCORING_FAILED,
    ),
    "federation": Kind(
        FEDERATIONS,
        FederationRequested(
            data=FederationSpec(
                model_name="churn",
                labels=["stay", "leave"],
                n_features=4,
                participants=[FederationMember(id="site-a", public_key="0" * 64)],
                holdout=DATASET,
            )
        ),
        subjects.FEDERATED_FAILED,
    ),
}
FAILURES = (TrainingFailed, ScoringFailed, FederationFailed)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, LocalIdentity]]:
    identity = LocalIdentity(tmp_path / "home").ensure(LocalDirStore(tmp_path / "store"))
    with NatsServer(tmp_path / "nats", auth=identity.nats_config) as server:
        yield server, identity


async def _as(world: tuple[NatsServer, LocalIdentity], role: str) -> Bus:
    server, identity = world
    return await Bus.from_settings(identity.bus_settings(role, server.url), name=role)


@pytest.fixture
async def bus(world: tuple[NatsServer, LocalIdentity]) -> AsyncIterator[Bus]:
    """The admin's connection: it provisions, submits the jobs and reads the outcomes."""
    b = await _as(world, "admin")
    await b.provision(ConsumerPolicy(ack_wait_s=ACK_WAIT_S, max_deliver=MAX_DELIVER))
    yield b
    await b.close()


@pytest.fixture
async def trainer(world: tuple[NatsServer, LocalIdentity], bus: Bus) -> AsyncIterator[Bus]:
    """The trainer's connection, with its grants only: every reaper runs as it."""
    b = await _as(world, "trainer")
    yield b
    await b.close()


def _settings(tmp_path: Path, server: NatsServer, **policy: float) -> TrainerSettings:
    policy = {"ack_wait_s": ACK_WAIT_S, "max_deliver": MAX_DELIVER, **policy}
    return TrainerSettings(home=tmp_path, nats_url=server.url, **policy)


async def _die_on_every_delivery(world: tuple[NatsServer, LocalIdentity], durable: str) -> None:
    """Take the job from `durable` and never answer, as a worker killed mid-job, on each delivery; then ask
    for work once more, as the restarted worker does: JetStream finds the job out of deliveries only when
    it would deliver it again, and sends its advisory then."""
    server, identity = world
    nc = await nats.connect(server.url, **nats_options(identity.bus_settings("admin", server.url)))
    try:
        pull = await nc.jetstream().pull_subscribe_bind(durable, stream=streams.JOBS_STREAM)
        for delivery in range(1, MAX_DELIVER + 1):
            (msg,) = await pull.fetch(1, timeout=10)  # the next one waits out the ack_wait: a redelivery
            assert msg.metadata.num_delivered == delivery
        with pytest.raises(nats.errors.TimeoutError):  # out of deliveries: nothing comes
            await pull.fetch(1, timeout=ACK_WAIT_S * 2)
    finally:
        await nc.close()


async def _check_reaped(bus: Bus, kind: Kind) -> None:
    """Reported failed (`MaxDeliveriesExceeded` where the event carries an error), dead-lettered, out of the queue."""
    async with asyncio.timeout(30):
        while not (failures := [parse_event(m.data) for m in await bus.history(kind.failed)]):
            await asyncio.sleep(0.2)
    (failure,) = failures
    assert isinstance(failure, FAILURES) and kind.job_id(failure) == kind.job.id
    assert f"ran out of deliveries ({MAX_DELIVER})" in failure.data.reason
    assert getattr(failure.data, "error", "MaxDeliveriesExceeded") == "MaxDeliveriesExceeded"
    letters = {parse_event(m.data).id: m.headers for m in await bus.history("fermion.dlq.>")}
    assert "ran out of deliveries" in letters[kind.job.id]["Fermion-Reason"]
    assert letters[kind.job.id]["Fermion-Deliveries"] == str(MAX_DELIVER)
    assert await bus.queued_jobs() == []  # out of the work queue: nothing is left to strand


@pytest.mark.parametrize("name", sorted(KINDS))
async def test_the_advisory_of_a_job_that_kills_its_worker_is_acted_on(
    name: str, tmp_path: Path, world: tuple[NatsServer, LocalIdentity], bus: Bus, trainer: Bus
) -> None:
    """Reaped from the advisory alone: this reaper scans for stranded jobs only at its start (its ack_wait
    is a minute), and would report a stranded job's deliveries as its own max_deliver (5), not the 2 the
    advisory says."""
    kind = KINDS[name]
    settings = _settings(tmp_path, world[0], ack_wait_s=60, max_deliver=5)
    reaper = asyncio.create_task(Reaper(trainer, settings, kind.jobs).run())
    try:
        await asyncio.sleep(0.5)  # its advisory subscription is live, its first scan done
        await bus.publish(kind.job)
        await _die_on_every_delivery(world, kind.jobs.durable)
        await _check_reaped(bus, kind)
    finally:
        reaper.cancel()


@pytest.mark.parametrize("name", ["training", "scoring", "federation"])
async def test_a_trainer_started_after_a_job_ran_out_of_deliveries_reaps_it(
    name: str, tmp_path: Path, world: tuple[NatsServer, LocalIdentity], bus: Bus, trainer: Bus
) -> None:
    """The trainer process's worker reaps trainings and federations, its scorer scorings: each found by
    the scan, the advisory having gone to no one."""
    kind = KINDS[name]
    await bus.publish(kind.job)
    await _die_on_every_delivery(world, kind.jobs.durable)  # no reaper listened: the advisory went to no one
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    stop = asyncio.Event()
    settings = _settings(tmp_path, world[0])
    unit = Scorer(trainer, registry, settings) if name == "scoring" else Worker(trainer, registry, settings)
    running = asyncio.create_task(unit.run(stop))
    try:
        await _check_reaped(bus, kind)
    finally:
        stop.set()
        await asyncio.wait_for(running, 10)
