"""The trainer worker as its own process on a real nats-server: outcomes, failures, dead letters."""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import numpy as np
import pytest
from pydantic import ValidationError

from fermion.events import (
    Bus,
    DatasetRef,
    DatasetUploaded,
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
from fermion.model_store import DatasetStore, PipelineRule, Pipelines, Registry, StoreSettings, open_registry
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


async def _dead_letters(
    nats_url: str, since: datetime, subject: str = "fermion.dlq.>"
) -> list[tuple[bytes, dict[str, str]]]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    sub = await js.subscribe(
        subject,
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
        (  # issue 26: a table with nothing usable names every column and why
            Recipe(epochs=1),
            b"id,b,label\n" + b"".join(b"%d,2,%s\n" % (i, b"xy"[i % 2 : i % 2 + 1]) for i in range(20)),
            "csv",
            "no column of the table can be used as a feature (label 'label'; 'id': id; 'b': constant)",
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


async def test_an_unusable_csv_is_named_by_column_and_its_values_stay_out_of_reasons_and_logs(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    # Issue 25: a trainer log quoted a dataset cell ("could not convert string to float: 'secret'").
    sentinel = "s3cr3t-" + datetime.now(UTC).strftime("%H%M%S%f")
    registry = _store(stack_env)
    # Issue 26: a text column no longer fails a job; one with nothing else usable does, naming columns only.
    rows = "".join(f"1,{sentinel}-{i},{'xy'[i % 2]}\n" for i in range(22))
    ref = _upload(registry, "leaky", f"a,b,label\n{rows}".encode(), "csv")
    since = datetime.now(UTC) - timedelta(seconds=1)
    event = TrainingRequested(data=TrainingRequest(model_name="leaky", dataset=ref, recipe=Recipe(epochs=1)))
    await bus.publish(event)
    failed = (await _outcome(bus, event.id, since))[-1]
    assert isinstance(failed, TrainingFailed)
    named = "'a': constant; 'b': text or id-like: 22 distinct values in 22 rows"
    assert named in failed.data.reason, failed.data.reason
    assert sentinel not in failed.data.reason
    letters = await _dead_letters(stack_env["FERMION_NATS_URL"], since)
    assert all(sentinel not in h.get("Fermion-Reason", "") for _, h in letters)
    assert event.id in trainer.log.read_text(errors="replace")  # the failure was logged ...
    assert sentinel not in trainer.log.read_text(errors="replace")  # ... without the cell


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


async def _letter_of(nats_url: str, since: datetime, subject: str, mine: Callable[[bytes], bool]) -> dict[str, str]:
    """The headers of the dead letter on `subject`'s dead-letter subject whose data is `mine`, once it is there."""
    for _ in range(50):
        letters = await _dead_letters(nats_url, since, subjects.dead_letter(subject))
        found = [h for d, h in letters if mine(d)]
        if found:
            return found[0]
        await asyncio.sleep(0.2)
    raise AssertionError(f"no such dead letter on {subjects.dead_letter(subject)}")


def _event_id(data: bytes) -> str | None:
    try:
        return parse_event(data).id
    except ValidationError:
        return None


@pytest.mark.parametrize(
    ("subject", "reason"),
    [
        (subjects.DATASETS_UPLOADED, "ValidationError: "),  # upload pipelines
        (subjects.MODELS_DRIFT_DETECTED, "ValidationError: "),  # drift retrains
        (subjects.TRAINING_SWEEP, "malformed training.sweep: "),  # sweeps
    ],
)
async def test_a_malformed_rule_event_is_dead_lettered_and_its_runner_goes_on(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str], subject: str, reason: str
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    kind = subject.removeprefix("fermion.")
    for n in (1, 2):  # the second one is refused too: the runner still consumes after the first
        data = f'{{"type": "{kind}", "data": {n}, "id": "{since.timestamp()}"}}'.encode()
        await bus.publish_bytes(subject, data, msg_id=f"malformed-{kind}-{since.timestamp()}-{n}")
        headers = await _letter_of(stack_env["FERMION_NATS_URL"], since, subject, data.__eq__)
        assert headers["Fermion-Reason"].startswith(reason), headers
        assert headers["Fermion-Deliveries"] == "1"
    assert trainer.proc is not None and trainer.proc.poll() is None


async def test_invalid_pipeline_rules_dead_letter_the_upload_once_the_valid_ones_requested(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    pipelines = Pipelines(_store(stack_env).store)
    for name, recipe in [("a-bad", {"epochs": "many"}), ("b-bad", {"architecture": 7}), ("c-good", {"epochs": 1})]:
        pipelines.put("default", PipelineRule(name=name, dataset_prefix="mixed-", model_name="mixed", recipe=recipe))
    upload = DatasetUploaded(
        data=DatasetRef(name="mixed-1", sha256="ab" * 32, uri="file:///nowhere/mixed-1.npz", format="npz", size=1)
    )
    requested: list[bytes] = []

    async def seen(raw: bytes) -> None:
        requested.append(raw)

    stop = await bus.on(subjects.TRAINING_REQUESTED, seen)
    since = datetime.now(UTC) - timedelta(seconds=1)
    try:
        await bus.publish(upload)
        for _ in range(50):
            ids = {parse_event(r).id for r in requested}
            if "c-good." + "ab" * 20 in ids:
                break
            await asyncio.sleep(0.2)
        assert ids == {"c-good." + "ab" * 20}  # the valid rule still trains; the invalid ones request nothing
        headers = await _letter_of(
            stack_env["FERMION_NATS_URL"], since, subjects.DATASETS_UPLOADED, lambda d: _event_id(d) == upload.id
        )
    finally:
        await stop()
        for name in ("a-bad", "b-bad", "c-good"):
            pipelines.remove("default", name)
    assert "pipeline rule 'a-bad' is invalid" in headers["Fermion-Reason"]
    assert "pipeline rule 'b-bad' is invalid" in headers["Fermion-Reason"]


@pytest.mark.parametrize(
    "hostile",
    [
        "job with spaces>",  # not a NATS subject token: training.cancel.<id> cannot be subscribed to
        "a/b",  # not a store key part: runs/<tenant>/<model>/<id>.json cannot be written
    ],
)
async def test_a_job_with_a_hostile_id_is_dead_lettered_and_the_worker_goes_on(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str], hostile: str
) -> None:
    ref = _upload(_store(stack_env), "blobs", _blobs_npz(), "npz")
    valid = TrainingRequested(data=TrainingRequest(model_name="hostile", dataset=ref, recipe=Recipe(epochs=1)))
    data = valid.to_json().replace(valid.id.encode(), json.dumps(hostile)[1:-1].encode())
    since = datetime.now(UTC) - timedelta(seconds=1)
    await bus.publish_bytes(subjects.TRAINING_REQUESTED, data, msg_id=f"hostile-{since.timestamp()}")
    headers = await _letter_of(stack_env["FERMION_NATS_URL"], since, subjects.TRAINING_REQUESTED, data.__eq__)
    assert "malformed training.requested event: id: String should match pattern" in headers["Fermion-Reason"]
    assert headers["Fermion-Deliveries"] == "1"  # refused at parse, never retried
    assert trainer.proc is not None and trainer.proc.poll() is None
