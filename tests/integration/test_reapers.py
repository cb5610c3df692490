"""A batch-scoring job that kills its worker on every delivery is dead-lettered and reported, not kept for ever.

A real nats-server. The dying worker is what JetStream sees of one: a pull from the scorers'
consumer that is never acknowledged, until the consumer's deliveries run out. The trainers' reaper
is held to the same by tests/integration/test_faults.py, with real trainer processes killed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from fermion.events import (
    Bus,
    ConsumerPolicy,
    DatasetRef,
    ScoringFailed,
    ScoringRequest,
    ScoringRequested,
    parse_event,
    streams,
)
from fermion.functions.trainer.reaper import SCORINGS, Reaper
from fermion.functions.trainer.scoring import Scorer
from fermion.functions.trainer.settings import TrainerSettings
from fermion.infra import NatsServer
from fermion.model_store import LocalDirStore, Registry

pytestmark = pytest.mark.integration

ACK_WAIT_S, MAX_DELIVER = 1.0, 2


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    with NatsServer(tmp_path / "nats") as s:
        yield s


@pytest.fixture
async def bus(server: NatsServer) -> AsyncIterator[Bus]:
    b = await Bus.connect(server.url)
    await b.provision(ConsumerPolicy(ack_wait_s=ACK_WAIT_S, max_deliver=MAX_DELIVER))
    yield b
    await b.close()


def _settings(tmp_path: Path, server: NatsServer) -> TrainerSettings:
    return TrainerSettings(home=tmp_path, nats_url=server.url, ack_wait_s=ACK_WAIT_S, max_deliver=MAX_DELIVER)


async def _scoring_job(bus: Bus) -> ScoringRequested:
    dataset = DatasetRef(name="big", sha256="0" * 64, uri="datasets/default/big.csv", format="csv", size=10)
    job = ScoringRequested(tenant="default", data=ScoringRequest(model_name="churn", version=1, dataset=dataset))
    await bus.publish(job)
    return job


async def _die_on_every_delivery(server: NatsServer) -> None:
    """Take the job from the scorers' consumer and never answer, as a worker killed mid-job, each delivery;
    then ask for work once more, as the restarted worker does: JetStream finds the job out of deliveries
    only when it would deliver it again, and sends its advisory then."""
    nc = await nats.connect(server.url)
    try:
        pull = await nc.jetstream().pull_subscribe_bind(streams.SCORER_DURABLE, stream=streams.JOBS_STREAM)
        for delivery in range(1, MAX_DELIVER + 1):
            (msg,) = await pull.fetch(1, timeout=10)  # the next one waits out the ack_wait: a redelivery
            assert msg.metadata.num_delivered == delivery
        with pytest.raises(nats.errors.TimeoutError):  # out of deliveries: nothing comes
            await pull.fetch(1, timeout=ACK_WAIT_S * 2)
    finally:
        await nc.close()


async def _reported(bus: Bus, job: ScoringRequested) -> ScoringFailed:
    """The job's scoring.failed event, once it is published."""
    async with asyncio.timeout(30):
        while True:
            for stored in await bus.history("fermion.scoring.failed"):
                event = parse_event(stored.data)
                if isinstance(event, ScoringFailed) and event.data.job_id == job.id:
                    return event
            await asyncio.sleep(0.2)


async def _check_reaped(bus: Bus, job: ScoringRequested) -> None:
    failed = await _reported(bus, job)
    assert f"ran out of deliveries ({MAX_DELIVER})" in failed.data.reason
    assert failed.data.error == "MaxDeliveriesExceeded" and failed.data.retryable
    letters = {parse_event(m.data).id: m.headers for m in await bus.history("fermion.dlq.>")}
    assert "ran out of deliveries" in letters[job.id]["Fermion-Reason"]
    assert letters[job.id]["Fermion-Deliveries"] == str(MAX_DELIVER)
    assert await bus.queued_jobs() == []  # out of the work queue: nothing is left to strand


async def test_the_advisory_of_a_scoring_job_that_kills_its_worker_is_acted_on(
    tmp_path: Path, server: NatsServer, bus: Bus
) -> None:
    reaper = asyncio.create_task(Reaper(bus, _settings(tmp_path, server), SCORINGS).run())
    try:
        await asyncio.sleep(0.3)  # its advisory subscription is live
        job = await _scoring_job(bus)
        await _die_on_every_delivery(server)
        await _check_reaped(bus, job)
    finally:
        reaper.cancel()


async def test_a_scorer_started_after_its_job_ran_out_of_deliveries_reaps_it(
    tmp_path: Path, server: NatsServer, bus: Bus
) -> None:
    job = await _scoring_job(bus)
    await _die_on_every_delivery(server)  # no scorer's reaper listened: the advisory went to no one
    settings = _settings(tmp_path, server)
    stop = asyncio.Event()
    scorer = asyncio.create_task(
        Scorer(bus, Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache"), settings).run(stop)
    )
    try:
        await _check_reaped(bus, job)
    finally:
        stop.set()
        await asyncio.wait_for(scorer, 10)
