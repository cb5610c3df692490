"""A three-node JetStream cluster: the stream leader's node is SIGKILLed mid-run and restarted.

30 jobs, two trainers connected through every node's URL, streams and consumers at replicas 3.
Five of the jobs are published while the node is down (a publish the cluster cannot confirm is
sent again with the same id). Every job completes, none is lost, none becomes two versions.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fermion.events import (
    Bus,
    BusError,
    ConsumerPolicy,
    DatasetRef,
    Recipe,
    TrainingCompleted,
    TrainingRequest,
    TrainingRequested,
    parse_event,
    streams,
    subjects,
)
from fermion.infra.nats_cluster import NatsCluster
from fermion.model_store import DatasetStore, Registry, StoreSettings, open_registry
from tests.helpers import Trainer

pytestmark = pytest.mark.integration
JOBS = 30
DURING_OUTAGE = 5


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path / "nats") as c:
        yield c


def _dataset(registry: Registry) -> DatasetRef:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = (rng.normal(size=(120, 4)) + y[:, None] * 3).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    stored = DatasetStore(registry.store).put("default", "toy", buf.getvalue(), "npz")
    return DatasetRef(name="toy", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)


def _registered(registry: Registry) -> dict[str, list[int]]:
    per_event: dict[str, list[int]] = {}
    for name in ("c0", "c1", "c2"):
        for v in registry.versions("default", name):
            event_id = registry.manifest("default", name, v).lineage.training_event_id or ""
            per_event.setdefault(event_id, []).append(v)
    return per_event


async def _until(condition, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while not await asyncio.to_thread(condition):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def _publish_until_accepted(bus: Bus, job: TrainingRequested) -> int:
    """Publish, and again with the same id while the cluster cannot confirm it; returns the attempts."""
    for attempt in range(1, 60):
        try:
            await bus.publish(job)
            return attempt
        except BusError:
            await asyncio.sleep(0.5)
    raise AssertionError(f"job {job.id} was never accepted")


async def test_thirty_jobs_survive_the_stream_leader_node_being_killed(cluster: NatsCluster, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "FERMION_HOME": str(tmp_path / "home"),
        "FERMION_NATS_URL": cluster.url,
        "FERMION_STREAM_REPLICAS": "3",
        "FERMION_ACK_WAIT_S": "3",
        "FERMION_MAX_DELIVER": "5",
        "FERMION_RETRY_DELAY_S": "0.2",
        "FERMION_PUBLISH_TIMEOUT_S": "2",
        "PYTHONUNBUFFERED": "1",
    }
    registry = open_registry(StoreSettings(home=tmp_path / "home"))
    ref = _dataset(registry)
    jobs = [
        TrainingRequested(data=TrainingRequest(model_name=f"c{i % 3}", dataset=ref, recipe=Recipe(epochs=2)))  # type: ignore[call-arg]
        for i in range(JOBS)
    ]
    bus = await Bus.connect(cluster.url, publish_timeout_s=2.0)
    trainers = [Trainer(env, tmp_path / f"trainer-{i}.log") for i in range(2)]
    try:
        await bus.provision(ConsumerPolicy(ack_wait_s=3, max_deliver=5), replicas=3)
        for job in jobs[: JOBS - DURING_OUTAGE]:
            await bus.publish(job)
        for t in trainers:
            t.start()
        await _until(lambda: len(_registered(registry)) >= 5, 120, "5 versions before the kill")
        leader = await bus.stream_leader(streams.JOBS_STREAM)
        assert leader in cluster.names
        os.kill(cluster.nodes[leader].pid, signal.SIGKILL)
        cluster.stop_node(leader)
        killed_at = time.monotonic()
        attempts = [await _publish_until_accepted(bus, job) for job in jobs[JOBS - DURING_OUTAGE :]]
        await _until(lambda: len(_registered(registry)) >= 15, 120, "15 versions with a node down")
        cluster.start_node(leader)
        down_s = time.monotonic() - killed_at
        await _until(lambda: len(_registered(registry)) >= JOBS, 180, f"all {JOBS} versions")
        async with asyncio.timeout(60):
            while not (await bus.consumer_state(streams.TRAINER_DURABLE)).idle:
                await asyncio.sleep(0.2)
        completed = {
            e.data.job_id
            for m in await bus.history(subjects.TRAINING_COMPLETED)
            if isinstance(e := parse_event(m.data), TrainingCompleted)
        }
        new_leader = await bus.stream_leader(streams.JOBS_STREAM)
    finally:
        await bus.close()
        for t in trainers:
            t.stop()
    per_event = _registered(registry)
    ids = {j.id for j in jobs}
    assert ids <= completed, f"{len(ids - completed)} jobs never completed"
    assert set(per_event) == ids, "a version without its job, or a job without its version"
    duplicates = {e: vs for e, vs in per_event.items() if len(vs) > 1}
    assert not duplicates, f"duplicate versions: {duplicates}"
    print(
        f"\ncluster: leader {leader} SIGKILLed for {down_s:.1f}s (leader now {new_leader}); {len(completed & ids)}"
        f"/{JOBS} completed, 0 lost, 0 duplicate versions; publishes during the outage took {attempts} attempts"
    )
