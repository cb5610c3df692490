"""The trainer worker as its own process on a real nats-server: outcomes, failures, dead letters."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import numpy as np
import pytest

from fermion.events import (
    Bus,
    DatasetRef,
    Event,
    Recipe,
    TrainingCompleted,
    TrainingFailed,
    TrainingProgress,
    TrainingRequest,
    TrainingRequested,
    parse_event,
    subjects,
)
from fermion.model_store import DatasetStore, Registry, StoreSettings, open_registry
from tests.helpers import Trainer

pytestmark = pytest.mark.integration


def _store(env: dict[str, str]) -> Registry:
    return open_registry(StoreSettings(home=Path(env["FERMION_HOME"]), store_url=env["FERMION_STORE_URL"]))


def _upload(registry: Registry, name: str, data: bytes, fmt: str) -> DatasetRef:
    stored = DatasetStore(registry.store).put("default", name, data, fmt)
    return DatasetRef(name=name, sha256=stored.sha256, uri=stored.uri, format=fmt, size=stored.size)


def _blobs_npz(n: int = 240) -> bytes:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 6)) + y[:, None] * 2.5).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


async def _outcome(bus: Bus, job_id: str, since: datetime, timeout_s: float = 60) -> list[Event]:
    """Every event of a job up to and including its completed/failed event."""
    seen: list[Event] = []

    async def collect() -> None:
        events = bus.watch("fermion.training.>", since=since)
        try:
            async for raw in events:
                event = parse_event(raw)
                if getattr(event.data, "job_id", None) == job_id:
                    seen.append(event)
                    if isinstance(event, TrainingCompleted | TrainingFailed):
                        return
        finally:
            await events.aclose()

    await asyncio.wait_for(collect(), timeout_s)
    return seen


async def _dead_letters(nats_url: str, since: datetime) -> list[tuple[bytes, dict[str, str]]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    sub = await js.subscribe(
        "fermion.dlq.>",
        ordered_consumer=True,
        deliver_policy=None,
        config=nats.js.api.ConsumerConfig(
            deliver_policy=nats.js.api.DeliverPolicy.BY_START_TIME, opt_start_time=since.isoformat()
        ),
    )
    out = []
    try:
        while True:
            msg = await sub.next_msg(timeout=1)
            out.append((msg.data, dict(msg.headers or {})))
    except nats.errors.TimeoutError:
        pass
    finally:
        await sub.unsubscribe()
        await nc.close()
    return out


async def test_a_job_trains_registers_and_reports(bus: Bus, trainer: Trainer, stack_env: dict[str, str]) -> None:
    registry = _store(stack_env)
    ref = _upload(registry, "blobs", _blobs_npz(), "npz")
    since = datetime.now(UTC) - timedelta(seconds=1)
    event = TrainingRequested(
        data=TrainingRequest(
            model_name="blobs", dataset=ref, recipe=Recipe(architecture="mlp", epochs=5, learning_rate=1e-2)
        )
    )
    await bus.publish(event)
    events = await _outcome(bus, event.id, since)
    progress = [e for e in events if isinstance(e, TrainingProgress)]
    assert [p.data.epoch for p in progress] == [0, 1, 2, 3, 4, 5]  # 0: "started"
    done = events[-1]
    assert isinstance(done, TrainingCompleted), events[-1]
    assert done.data.metrics["accuracy"] >= 0.9
    manifest = registry.manifest("default", "blobs", done.data.version)
    assert manifest.lineage.training_event_id == event.id
    assert manifest.lineage.dataset_sha256 == ref.sha256
    assert manifest.compile_report["parity"]["max_abs_diff"] < 1e-4
    assert manifest.signature.inputs[0].shape == [-1, 6]
    assert registry.resolve("default", "blobs") == done.data.version

    # The same event delivered again (as after a crash between registering and acking) registers nothing new.
    await bus.publish_bytes(subjects.TRAINING_REQUESTED, event.to_json(), msg_id=event.id + ".again")
    again = await _outcome(bus, event.id, datetime.now(UTC) - timedelta(seconds=1))
    assert isinstance(again[-1], TrainingCompleted) and again[-1].data.version == done.data.version
    assert registry.versions("default", "blobs") == [done.data.version]


@pytest.mark.parametrize(
    ("recipe", "data", "fmt", "reason"),
    [
        (Recipe(architecture="transformer", epochs=1), _blobs_npz(), "npz", "unknown architecture 'transformer'"),
        (
            Recipe(label_column="species", epochs=1),
            b"a,b,label\n" + b"1,2,x\n" * 20,
            "csv",
            "no label column 'species'",
        ),
        (Recipe(architecture="cnn", epochs=1), _blobs_npz(), "npz", "square"),
        (Recipe(epochs=1), b"\x00not an npz", "npz", "not a readable .npz"),
    ],
)
async def test_a_bad_job_fails_with_its_reason_and_is_dead_lettered(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str], recipe: Recipe, data: bytes, fmt: str, reason: str
) -> None:
    registry = _store(stack_env)
    ref = _upload(registry, "bad", data, fmt)
    since = datetime.now(UTC) - timedelta(seconds=1)
    event = TrainingRequested(data=TrainingRequest(model_name="bad", dataset=ref, recipe=recipe))
    await bus.publish(event)
    events = await _outcome(bus, event.id, since)
    failed = events[-1]
    assert isinstance(failed, TrainingFailed)
    assert reason in failed.data.reason
    assert registry.versions("default", "bad") == []  # nothing half-written became visible
    letters = await _dead_letters(stack_env["FERMION_NATS_URL"], since)
    mine = [h for d, h in letters if parse_event(d).id == event.id]
    assert mine and reason in mine[0]["Fermion-Reason"]


async def test_a_malformed_event_is_dead_lettered_and_the_worker_goes_on(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    await bus.publish_bytes(
        subjects.TRAINING_REQUESTED, b'{"type": "training.requested", "data": 42}', msg_id="malformed-1"
    )
    for _ in range(50):
        letters = await _dead_letters(stack_env["FERMION_NATS_URL"], since)
        if any(d.startswith(b'{"type": "training.requested", "data": 42}') for d, _ in letters):
            break
        await asyncio.sleep(0.2)
    (headers,) = [h for d, h in letters if d.startswith(b'{"type": "training.requested", "data": 42}')]
    assert "malformed training.requested event" in headers["Fermion-Reason"]
    assert trainer.proc is not None and trainer.proc.poll() is None


async def test_a_job_naming_another_tenants_dataset_is_refused(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    registry = _store(stack_env)
    theirs = _upload(registry, "private", _blobs_npz(), "npz")  # tenant default's data
    since = datetime.now(UTC) - timedelta(seconds=1)
    event = TrainingRequested(tenant="mallory", data=TrainingRequest(model_name="stolen", dataset=theirs))
    await bus.publish(event)
    failed = (await _outcome(bus, event.id, since))[-1]
    assert isinstance(failed, TrainingFailed) and "lies outside tenant 'mallory'" in failed.data.reason
    assert registry.models("mallory") == []
