"""At most one version per event id, whatever the delivery: real trainers on a real nats-server.

A client that sets no `Nats-Msg-Id` (so JetStream cannot de-duplicate), two trainers working on
copies of the same event at once, and a trainer SIGKILLed between its claim and its manifest: each
event still ends as exactly one version, the one its claim names.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from fermion.events import (
    Bus,
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
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, Registry, StoreSettings, open_registry
from tests.helpers import REPO, Trainer

pytestmark = pytest.mark.integration
COPIES = 10


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, str]]:
    with NatsServer(tmp_path / "nats") as server:
        yield {
            **os.environ,
            "FERMION_HOME": str(tmp_path / "home"),
            "FERMION_NATS_URL": server.url,
            "FERMION_ACK_WAIT_S": "3",
            "FERMION_MAX_DELIVER": "3",
            "FERMION_RETRY_DELAY_S": "0.2",
            "PYTHONUNBUFFERED": "1",
        }


def _registry(env: dict[str, str]) -> Registry:
    return open_registry(StoreSettings(home=Path(env["FERMION_HOME"])))


def _dataset(registry: Registry) -> DatasetRef:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = (rng.normal(size=(120, 4)) + y[:, None] * 3).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    stored = DatasetStore(registry.store).put("default", "toy", buf.getvalue(), "npz")
    return DatasetRef(name="toy", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)


async def _publish_without_msg_id(bus: Bus, event: TrainingRequested, times: int) -> None:
    for _ in range(times):  # no Nats-Msg-Id: every copy is a new message JetStream keeps
        assert await bus.publish_bytes(subjects.TRAINING_REQUESTED, event.to_json())


async def _drained(bus: Bus, timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not (await bus.consumer_state(streams.TRAINER_DURABLE)).idle:
            await asyncio.sleep(0.1)


async def test_one_version_per_event_despite_copies_concurrency_and_a_kill(env: dict[str, str], tmp_path: Path) -> None:
    registry = _registry(env)
    ref = _dataset(registry)
    recipe = Recipe(epochs=2)  # type: ignore[call-arg]
    killed = TrainingRequested(data=TrainingRequest(model_name="toy", dataset=ref, recipe=recipe))
    raced = TrainingRequested(data=TrainingRequest(model_name="toy", dataset=ref, recipe=recipe))
    bus = await Bus.connect(env["FERMION_NATS_URL"])
    trainers: list[Trainer] = []
    try:
        await bus.provision(ConsumerPolicy(ack_wait_s=3, max_deliver=3))
        # 1. A trainer dies between its claim and its manifest.
        with open(tmp_path / "dying.log", "wb") as out:
            dying = subprocess.Popen(
                [sys.executable, str(REPO / "tests" / "fixtures" / "dying_trainer.py")],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        await _publish_without_msg_id(bus, killed, 1)
        assert dying.wait(timeout=90) == -signal.SIGKILL, (tmp_path / "dying.log").read_text()
        claimed = registry.claims.get("models/default/toy/", killed.id)
        assert claimed is not None and registry.versions("default", "toy") == []  # claimed, not yet visible

        # 2. Many more copies of it, and of a second event, to two trainers at once.
        await _publish_without_msg_id(bus, killed, COPIES)
        await _publish_without_msg_id(bus, raced, COPIES)
        for i in range(2):
            trainers.append(Trainer(env, tmp_path / f"trainer-{i}.log").start())
        await _drained(bus, timeout_s=120)
        completed = [parse_event(m.data, TrainingCompleted) for m in await bus.history(subjects.TRAINING_COMPLETED)]
    finally:
        await bus.close()
        for t in trainers:
            t.stop()

    versions: dict[str, list[int]] = {}
    for event in completed:
        assert isinstance(event, TrainingCompleted)
        versions.setdefault(event.data.job_id, []).append(event.data.version)
    assert len(versions[killed.id]) == COPIES + 1  # every copy completed (the killed delivery too)...
    assert set(versions[killed.id]) == {claimed.version}  # ...as the version its claim named
    assert len(versions[raced.id]) == COPIES and len(set(versions[raced.id])) == 1
    assert registry.versions("default", "toy") == sorted({claimed.version, versions[raced.id][0]})
    lineage = {
        registry.manifest("default", "toy", v).lineage.training_event_id for v in registry.versions("default", "toy")
    }
    assert lineage == {killed.id, raced.id}
    print(
        f"\nonce per event: {COPIES + 1} + {COPIES} copies without Nats-Msg-Id, 2 trainers, 1 SIGKILL mid-registration"
        f" -> versions {registry.versions('default', 'toy')}"
    )
