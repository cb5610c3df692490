"""The bus under fuzz: generated and mutated events on every subject a function consumes.

Real processes (a trainer, a monitor, a federation coordinator) on the session's nats-server. Each
malformed message on a JetStream work subject must end on `fermion.dlq.<subject>` with a
`Fermion-Reason` header, checked one example at a time (so the example after a fuzzed one being
dead-lettered shows its consumer went on); a valid event after the batch is still handled; no
process dies. Core-NATS and event-log subjects cannot dead-letter: there the consumer logs what it
drops and keeps running. Hypothesis runs derandomized with no example database: the same examples
on every run.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from nats.js.api import ConsumerConfig, DeliverPolicy

from fermion.events import (
    DatasetRef,
    DatasetUploaded,
    DriftDetected,
    DriftReport,
    Event,
    LabelBatch,
    LabelEntry,
    LabelsSubmitted,
    ModelRollout,
    Recipe,
    RolloutChange,
    SweepRequest,
    TrainingRequest,
    TrainingRequested,
    TrainingSweep,
    derive_id,
    parse_event,
    streams,
    subjects,
)
from fermion.events.envelope import ID_PATTERN
from fermion.events.federation import FederationMember, FederationRequested, FederationSpec
from fermion.events.traffic import TelemetryBatch
from fermion.model_store import LocalDirStore, PipelineRule, Pipelines
from tests.helpers import FunctionProcess, Trainer, wait_until

pytestmark = pytest.mark.integration

EXAMPLES = 50
"""Generated examples per subject (the explicit ones come on top): a few seconds each on a 2-core machine."""
FUZZ = settings(
    max_examples=EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
TENANT = "fuzz"
MISSING = DatasetRef(name="nowhere", sha256="0" * 64, uri="file:///nowhere/x.npz", format="npz", size=1)


# ---- what is generated --------------------------------------------------------------------------

HOSTILE_IDS = st.one_of(
    st.sampled_from(
        ['a"onfocus="alert(1)"autofocus="', "with space", "a>", "a.*", "a/b", "../x", ".x", "x\n", "x\x00y", "é"]
    ),
    st.just("x" * 129),
    st.text(min_size=0, max_size=80).filter(lambda s: re.fullmatch(ID_PATTERN, s) is None),
)
JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
RAW = st.one_of(
    st.binary(max_size=300),  # not JSON, not UTF-8
    st.sampled_from([b"", b"null", b"{}", b"[]", b"{", b'"x"', b"\xff\xfe\x00", b"[" * 50_000, b'{"a":' * 50_000]),
    st.sampled_from([100_000, 600_000]).map(lambda n: b'{"type": "x", "data": "' + b"x" * n + b'"}'),  # huge
    JUNK.map(lambda j: json.dumps(j).encode()),
)


def _paths(doc: Any, at: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every key path in a JSON document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield (*at, k)
            yield from _paths(v, (*at, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield (*at, i)
            yield from _paths(v, (*at, i))


def _set(doc: Any, path: tuple[Any, ...], value: Any, *, drop: bool = False) -> None:
    for key in path[:-1]:
        doc = doc[key]
    if drop:
        del doc[path[-1]]
    else:
        doc[path[-1]] = value


def _cloudevent(doc: dict[str, Any]) -> dict[str, Any]:
    """The same event in the CloudEvents envelope (consumers accept both)."""
    out: dict[str, Any] = {"specversion": "1.0", "source": "/fermion"}
    for own, ce in [("id", "id"), ("time", "time"), ("tenant", "tenant"), ("data", "data")]:
        if own in doc:
            out[ce] = doc[own]
    out["type"] = f"fermion.{doc['type']}" if isinstance(doc.get("type"), str) else doc.get("type")
    return out


@st.composite
def mutated(draw: st.DrawFn, valid: dict[str, Any]) -> bytes:
    """A valid event with one thing wrong: a field dropped or retyped, a hostile id, tenant or type, junk data."""
    doc = copy.deepcopy(valid)
    how = draw(st.sampled_from(["drop", "retype", "id", "tenant", "type", "data", "huge"]))
    paths = list(_paths(doc))
    if how == "drop":
        _set(doc, draw(st.sampled_from(paths)), None, drop=True)
    elif how == "retype":
        _set(doc, draw(st.sampled_from(paths)), draw(JUNK))
    elif how == "id":
        doc["id"] = draw(HOSTILE_IDS)
    elif how == "tenant":
        doc["tenant"] = draw(st.sampled_from(["../x", "UPPER", "a/b", "", "x" * 64, None, 7]))
    elif how == "type":
        doc["type"] = draw(st.text(max_size=30) | st.sampled_from(["training.requested", "models.published"]))
    elif how == "data":
        doc["data"] = draw(JUNK)
    else:  # a valid event with a huge field the schema refuses
        doc["data"]["model_name" if "model_name" in doc["data"] else "junk"] = "x" * draw(
            st.sampled_from([1000, 400_000])
        )
    if draw(st.booleans()):
        doc = _cloudevent(doc)
    return json.dumps(doc).encode()


def malformed(valid: Event) -> st.SearchStrategy[bytes]:
    """Bytes that are not an event of `valid`'s type: raw junk, or `valid` mutated."""
    return st.one_of(RAW, mutated(valid.model_dump(mode="json")))


def _always(valid: Event) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Explicit examples every run tries first: deep nesting, a hostile id in either envelope, the wrong type."""
    doc = valid.model_dump(mode="json")
    hostile = [
        {**doc, "id": "a b>"},
        _cloudevent({**doc, "id": "a/b"}),
        {**doc, "type": "models.published"},
    ]
    cases = [b"[" * 50_000, b'{"a":' * 50_000, *(json.dumps(h).encode() for h in hostile)]

    def add(test: Callable[..., None]) -> Callable[..., None]:
        for data in cases:
            test = example(data=data)(test)
        return test

    return add


def refused(data: bytes, kind: type[Event]) -> bool:
    """Whether a consumer of `kind` must refuse `data` (the local parse is the oracle)."""
    try:
        parse_event(data, kind)
    except Exception:
        return True
    return False


# ---- the wire, driven from synchronous code (hypothesis's tests are) ---------------------------


class Wire:
    """A NATS connection whose loop runs in a thread; it collects every dead letter as it arrives."""

    def __init__(self, url: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.letters: dict[tuple[str, int], dict[str, str]] = {}
        self.run(self._connect(url))

    def run(self, coro: Coroutine[Any, Any, Any], timeout_s: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)

    async def _connect(self, url: str) -> None:
        self.nc = await nats.connect(url)
        self.js = self.nc.jetstream()

        async def on_letter(msg: Any) -> None:
            headers = dict(msg.headers or {})
            self.letters[(msg.subject, int(headers["Nats-Msg-Id"].rsplit(".", 1)[1]))] = headers

        config = ConsumerConfig(deliver_policy=DeliverPolicy.NEW)
        self.sub = await self.js.subscribe(
            f"{subjects.DLQ_PREFIX}.>", ordered_consumer=True, config=config, cb=on_letter
        )

    def publish(self, subject: str, data: bytes) -> int:
        """Store `data` on `subject`; its stream sequence."""
        return int(self.run(self.js.publish(subject, data)).seq)

    def send(self, subject: str, data: bytes) -> None:
        """Core NATS: unstored."""
        self.run(self._send(subject, data))

    async def _send(self, subject: str, data: bytes) -> None:
        await self.nc.publish(subject, data)
        await self.nc.flush()

    def letter(self, subject: str, seq: int, timeout_s: float = 20) -> dict[str, str]:
        """The headers of the dead letter of message `seq` on `subject`, once it is there."""
        key = (subjects.dead_letter(subject), seq)
        wait_until(lambda: key in self.letters, timeout_s, f"the dead letter of {subject} message {seq}")
        return self.letters[key]

    def consumer_idle(self, durable: str, stream: str) -> bool:
        info = self.run(self.js.consumer_info(stream, durable))
        return not info.num_pending and not info.num_ack_pending

    def close(self) -> None:
        self.run(self.sub.unsubscribe())
        self.run(self.nc.close())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


# ---- the processes -----------------------------------------------------------------------------


class Proc(FunctionProcess):
    """A function process that is ready once its log says `ready`."""

    def __init__(self, module: str, env: dict[str, str], log: Path, ready: str) -> None:
        super().__init__([module], env, log)
        self.start().wait_for(ready, 60, f"{module} ready")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@pytest.fixture(scope="module")
def wire(nats_server: Any) -> Iterator[Wire]:
    w = Wire(nats_server.url)
    yield w
    w.close()


@pytest.fixture(scope="module")
def monitor(stack_env: dict[str, str]) -> Iterator[Proc]:
    home = Path(stack_env["FERMION_HOME"])
    proc = Proc("fermion.functions.monitor", stack_env, home / "fuzz-monitor.log", "monitor: consuming")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def coordinator(stack_env: dict[str, str]) -> Iterator[Proc]:
    home = Path(stack_env["FERMION_HOME"])
    proc = Proc("fermion.functions.federated", stack_env, home / "fuzz-coordinator.log", "federations: consuming")
    yield proc
    proc.stop()


# ---- JetStream work: every malformed message is dead-lettered with a reason ----------------------


@dataclass(frozen=True)
class Case:
    """A consumed JetStream subject: a valid event of it, and how to see a valid one still handled."""

    subject: str
    valid: Event
    durable: str
    stream: str
    sentinel: Callable[[Wire, Event, Path], None] | None = None
    """Publishes a valid event after the batch and waits for its handling; default: the consumer is idle."""


def _trained_and_failed(job_id: str) -> Callable[[Wire, Event, Path], None]:
    """The trainer publishes `training.failed` for `job_id` (its dataset is missing)."""

    def check(wire: Wire, event: Event, home: Path) -> None:
        failed: list[bytes] = []

        async def watch() -> None:
            async def on_failed(msg: Any) -> None:
                failed.append(msg.data)

            sub = await wire.nc.subscribe(subjects.TRAINING_FAILED, cb=on_failed)
            await wire.nc.flush()
            await wire.js.publish(event.subject, event.to_json())
            for _ in range(300):
                if any(parse_event(f).data.job_id == job_id for f in failed):  # type: ignore[attr-defined]
                    break
                await asyncio.sleep(0.1)
            await sub.unsubscribe()

        wire.run(watch(), timeout_s=60)
        assert any(parse_event(f).data.job_id == job_id for f in failed), f"no training.failed for {job_id}"  # type: ignore[attr-defined]

    return check


def _dead_lettered_with(reason: str) -> Callable[[Wire, Event, Path], None]:
    """A valid event the consumer refuses for what it names (not for its shape): dead-lettered with `reason`."""

    def check(wire: Wire, event: Event, home: Path) -> None:
        seq = wire.publish(event.subject, event.to_json())
        assert reason in wire.letter(event.subject, seq, timeout_s=60)["Fermion-Reason"]

    return check


_REQUEST = TrainingRequested(tenant=TENANT, data=TrainingRequest(model_name="fuzzed", dataset=MISSING))
_SWEEP = TrainingSweep(
    tenant=TENANT, data=SweepRequest(model_name="fuzzed", dataset=MISSING, trials=[Recipe(epochs=1)])
)
_UPLOAD = DatasetUploaded(tenant=TENANT, data=MISSING.model_copy(update={"name": "fuzz-data"}))
_DRIFT = DriftDetected(
    tenant=TENANT,
    data=DriftReport(model_name="fuzzed", version=1, window=0, rows=10, features=["f0"], psi={}, ks_pvalue={}),
)
_FEDERATION = FederationRequested(
    tenant=TENANT,
    data=FederationSpec(
        model_name="fuzzed",
        labels=["a", "b"],
        n_features=4,
        participants=[FederationMember(id="site-a", public_key="0" * 64)],
        holdout=MISSING,
    ),
)
CASES = [
    Case(subjects.TRAINING_REQUESTED, _REQUEST, streams.TRAINER_DURABLE, streams.JOBS_STREAM),
    Case(subjects.TRAINING_SWEEP, _SWEEP, streams.SWEEP_DURABLE, streams.JOBS_STREAM),
    Case(subjects.DATASETS_UPLOADED, _UPLOAD, streams.PIPELINE_DURABLE, streams.EVENTS_STREAM),
    Case(subjects.MODELS_DRIFT_DETECTED, _DRIFT, streams.RETRAIN_DURABLE, streams.EVENTS_STREAM),
    Case(subjects.FEDERATED_REQUESTED, _FEDERATION, streams.FEDERATION_DURABLE, streams.JOBS_STREAM),
]


def _sentinel(case: Case) -> tuple[Event, Callable[[Wire, Event, Path], None] | None]:
    """A fresh valid event of the case (a new id) and how to see it handled."""
    event = case.valid.model_copy(update={"id": f"sentinel-{time.time_ns()}"})
    if isinstance(event, TrainingRequested):
        return event, _trained_and_failed(event.id)
    if isinstance(event, TrainingSweep):
        return event, _trained_and_failed(derive_id(event.id, 0))  # its trial, whose dataset is missing
    if isinstance(event, DatasetUploaded):
        return event, _dead_lettered_with("pipeline rule 'fuzz-invalid' is invalid")
    if isinstance(event, FederationRequested):
        return event, _dead_lettered_with("nowhere")
    return event, None


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.subject.removeprefix("fermion."))
def test_every_malformed_message_is_dead_lettered_with_a_reason_and_the_consumer_goes_on(
    case: Case, wire: Wire, trainer: Trainer, coordinator: Proc, stack_env: dict[str, str]
) -> None:
    home = Path(stack_env["FERMION_HOME"])
    kind = type(case.valid)
    tried: list[bytes] = []

    @FUZZ
    @given(data=malformed(case.valid))
    @_always(case.valid)
    def one(data: bytes) -> None:
        assume(refused(data, kind))
        tried.append(data)
        seq = wire.publish(case.subject, data)
        headers = wire.letter(case.subject, seq)
        assert headers["Fermion-Reason"].strip(), headers
        assert headers["Fermion-Deliveries"] == "1"  # refused on sight, never retried

    one()
    assert len(tried) >= EXAMPLES // 2, "too few malformed examples were generated"
    assert trainer.proc is not None and trainer.proc.poll() is None, "the trainer died"
    assert coordinator.alive(), "the federation coordinator died"

    pipelines = Pipelines(LocalDirStore(home / "store"))
    pipelines.put(
        TENANT, PipelineRule(name="fuzz-invalid", dataset_prefix="fuzz-", model_name="fuzzed", recipe={"epochs": "x"})
    )
    try:
        event, check = _sentinel(case)
        if check is not None:
            check(wire, event, home)
        else:
            wire.publish(case.subject, event.to_json())
        wait_until(lambda: wire.consumer_idle(case.durable, case.stream), 60, f"{case.durable} to be idle")
    finally:
        pipelines.remove(TENANT, "fuzz-invalid")
    assert trainer.proc is not None and trainer.proc.poll() is None, "the trainer died"
    assert coordinator.alive(), "the federation coordinator died"


# ---- subjects that cannot dead-letter: the consumer logs what it drops and keeps running ---------

_LABELS = LabelsSubmitted(
    tenant=TENANT, data=LabelBatch(model_name="fuzzed", labels=[LabelEntry(request_id="r1", label="a")])
)
_ROLLOUT = ModelRollout(
    tenant=TENANT,
    data=RolloutChange(
        model_name="fuzzed",
        alias="production",
        canary=2,
        incumbent=1,
        action="started",
        weights={1: 90, 2: 10},
        reason="x",
    ),
)


def test_malformed_telemetry_labels_and_rollouts_are_dropped_and_the_monitor_goes_on(wire: Wire, monitor: Proc) -> None:
    drops = {"telemetry": 0, "labels": 0}
    before = {k: monitor.text().count(f"dropped an unreadable {k}") for k in drops}

    @FUZZ
    @given(
        telemetry=st.one_of(RAW, JUNK.map(lambda j: json.dumps({"stats": j}).encode())),
        labels=malformed(_LABELS),
        rollout=malformed(_ROLLOUT),
    )
    def one(telemetry: bytes, labels: bytes, rollout: bytes) -> None:
        if refused_telemetry(telemetry):
            wire.send(subjects.TELEMETRY, telemetry)
            drops["telemetry"] += 1
        if refused(labels, LabelsSubmitted):
            wire.publish(subjects.MODELS_LABELS, labels)
            drops["labels"] += 1
        if refused(rollout, ModelRollout):
            wire.publish(f"{subjects.MODELS_ROLLOUT}.started", rollout)

    one()
    for kind, n in drops.items():
        line = f"dropped an unreadable {kind}"
        wait_until(lambda: monitor.text().count(line) - before[kind] >= n, 60, f"{n} '{line}' lines")  # noqa: B023
    assert drops["telemetry"] >= EXAMPLES // 2 and drops["labels"] >= EXAMPLES // 2
    assert monitor.alive(), "the monitor died"


def refused_telemetry(data: bytes) -> bool:
    try:
        TelemetryBatch.model_validate_json(data)
    except Exception:
        return True
    return False


@pytest.mark.parametrize(
    "subject",
    [
        subjects.cancel("no-such-job"),
        subjects.FEDERATED_ROUND_STARTED,  # followed by participants, during a federation only
        subjects.FEDERATED_UPDATE_SUBMITTED,  # collected by the coordinator, during a federation only
    ],
)
def test_junk_on_the_event_log_subjects_harms_no_one(
    subject: str, wire: Wire, trainer: Trainer, coordinator: Proc
) -> None:
    @FUZZ
    @given(data=RAW)
    def one(data: bytes) -> None:
        wire.publish(subject, data)

    one()
    time.sleep(1)
    assert trainer.proc is not None and trainer.proc.poll() is None, "the trainer died"
    assert coordinator.alive(), "the federation coordinator died"
