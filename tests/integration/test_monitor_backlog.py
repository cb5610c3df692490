"""The monitor sees the trainers' backlog with no trainer running (the trainers' own gauges go with them
when they are scaled to zero): `fermion_monitor_trainer_backlog_messages`, read as the monitor role of
`fermion up` on a real nats-server, which grants it each consumer's info and nothing more. A job taken by
a trainer that then died (delivered, never acknowledged) is still work to do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from prometheus_client import CollectorRegistry

from fermion.events import Bus, DatasetRef, Recipe, TrainingRequest, TrainingRequested, streams
from fermion.events.connection import nats_options
from fermion.infra import NatsServer
from fermion.infra.identity import LocalIdentity
from fermion.model_store import LocalDirStore
from fermion.service.observability.backlog import poll_backlogs
from fermion.service.observability.monitor import MonitorMetrics

pytestmark = pytest.mark.integration

DATASET = DatasetRef(name="d", sha256="0" * 64, uri="datasets/default/d.csv", format="csv", size=10)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, LocalIdentity]]:
    identity = LocalIdentity(tmp_path / "home").ensure(LocalDirStore(tmp_path / "store"))
    with NatsServer(tmp_path / "nats", auth=identity.nats_config) as server:
        admin = await Bus.from_settings(identity.bus_settings("admin", server.url), name="admin")
        try:
            await admin.provision()
            for _ in range(2):  # two trainings queued, and no trainer to take them
                await admin.publish(
                    TrainingRequested(data=TrainingRequest(model_name="m", dataset=DATASET, recipe=Recipe()))
                )
        finally:
            await admin.close()
        # A trainer takes the first and dies with it: delivered, never acknowledged.
        nc = await nats.connect(server.url, **nats_options(identity.bus_settings("admin", server.url)))
        try:
            pull = await nc.jetstream().pull_subscribe_bind(streams.TRAINER_DURABLE, stream=streams.JOBS_STREAM)
            assert len(await pull.fetch(1, timeout=10)) == 1
        finally:
            await nc.close()
        yield server, identity


async def _backlog_as(
    world: tuple[NatsServer, LocalIdentity], role: str, metrics: MonitorMetrics | None = None
) -> dict[str, float]:
    """One round of the monitor's backlog reads as `role`: consumer → pending, as its gauge says after it."""
    server, identity = world
    bus = await Bus.from_settings(identity.bus_settings(role, server.url), name=role)
    metrics, stop = metrics or MonitorMetrics(CollectorRegistry()), asyncio.Event()
    try:
        reads: list[bool] = []

        def read(ok: bool) -> None:
            metrics.backlog_read(ok)
            reads.append(ok)
            stop.set()  # one round

        await asyncio.wait_for(
            poll_backlogs(bus.consumer_state, streams.TRAINER_CONSUMERS, stop, metrics.backlog, read), 10
        )
        assert len(reads) == 1
    finally:
        await bus.close()
    samples = metrics.registry.get_sample_value
    return {
        durable: value
        for _, durable in streams.TRAINER_CONSUMERS
        if (value := samples("fermion_monitor_trainer_backlog_messages", {"consumer": durable})) is not None
    }


async def test_the_monitor_role_reads_every_trainer_consumers_backlog(world: tuple[NatsServer, LocalIdentity]) -> None:
    assert await _backlog_as(world, "monitor") == {
        streams.TRAINER_DURABLE: 2,  # one waiting, one held by the trainer that died
        streams.SWEEP_DURABLE: 0,
        streams.SCORER_DURABLE: 0,
        streams.PIPELINE_DURABLE: 0,
        streams.RETRAIN_DURABLE: 0,
    }


async def test_a_read_refused_leaves_no_stale_figure(world: tuple[NatsServer, LocalIdentity]) -> None:
    metrics = MonitorMetrics(CollectorRegistry())
    assert (await _backlog_as(world, "monitor", metrics))[streams.TRAINER_DURABLE] == 2
    assert metrics.registry.get_sample_value("fermion_monitor_trainer_backlog_up") == 1
    # A role without the grant is refused: the counts go, so no alert fires on what was last read, and
    # the failed read is what FermionTrainerBacklogUnreadable sees.
    assert await _backlog_as(world, "inference", metrics) == {}
    assert metrics.registry.get_sample_value("fermion_monitor_trainer_backlog_up") == 0
