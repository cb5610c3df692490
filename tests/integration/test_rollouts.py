"""Automatic rollouts and drift on the real stack: nats-server, an inference process, a monitor process.

The inference function reports per-version stats, samples and predictions on NATS every 0.2 s;
the monitor judges rollouts every 0.2 s and drift every 500 sampled rows. Each test uses its own
model name, so they share the processes.
"""

from __future__ import annotations

import contextlib
import io
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError

from fermion.events import (
    Bus,
    Event,
    LabelBatch,
    LabelEntry,
    LabelsSubmitted,
    ModelRollout,
    RolloutChange,
    parse_event,
    subjects,
)
from fermion.events.monitoring import DriftDetected, DriftJudged
from fermion.model_store import (
    Bounds,
    Draft,
    LocalDirStore,
    Registry,
    Rollouts,
    ServingLog,
    Signer,
)
from fermion.model_store.profiles import build_profile
from tests.helpers import FunctionProcess, api_key, bearer, free_port, linear_draft, linear_onnx, wait_until

E = TypeVar("E", bound=Event)
pytestmark = pytest.mark.integration
TENANT = "default"
N_FEATURES = 8


@pytest.fixture(scope="module")
def env(stack_env: dict[str, str]) -> dict[str, str]:
    return {
        **stack_env,
        "FERMION_DEFAULT_ALIAS": "production",
        "FERMION_ALIAS_TTL_S": "0.3",
        "FERMION_TELEMETRY_INTERVAL_S": "0.2",
        "FERMION_SAMPLE_RATE": "1.0",
        "FERMION_SAMPLE_MAX_ROWS": "100000",
        "FERMION_PROVIDERS": '["CPUExecutionProvider"]',
        "FERMION_TICK_S": "0.2",
        "FERMION_WINDOW_ROWS": "500",
        "FERMION_SERVING_WINDOW_S": "1",
        "FERMION_METRICS_PORT": str(free_port()),  # the monitor's /metrics
    }


@pytest.fixture(scope="module")
def registry(env: dict[str, str]) -> Registry:
    home = Path(env["FERMION_HOME"])  # signs as trainers do: inference serves only signed versions
    return Registry(
        LocalDirStore(home / "store"), home / "test-cache", signer=Signer.from_file(home / "keys/signing.key")
    )


@pytest.fixture(scope="module")
def monitor(env: dict[str, str]) -> Iterator[FunctionProcess]:
    proc = FunctionProcess(["fermion.functions.monitor"], env, Path(env["FERMION_HOME"]) / "monitor.log").start()
    wait_until(lambda: "monitor: consuming" in proc.text(), 60, "the monitor to consume")
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def inference(env: dict[str, str], monitor: FunctionProcess, registry: Registry) -> Iterator[httpx.Client]:
    port = free_port()
    args = ["fermion.functions.inference", "--port", str(port), "--log-level", "info"]
    proc = FunctionProcess(args, env, Path(env["FERMION_HOME"]) / "inference.log").start()
    headers = bearer(api_key(registry, "infer"))
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=headers) as client:

        def live() -> bool:
            try:
                return client.get("/v2/health/live").status_code == 200
            except httpx.TransportError:
                return False

        wait_until(live, 60, "the inference function to answer")
        yield client
    proc.stop()


def broken_onnx() -> bytes:
    """A model whose every run fails in ONNX Runtime (a reshape that cannot fit one row of 4)."""
    shape = helper.make_tensor("shape", TensorProto.INT64, [2], [3, -1])
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["input", "shape"], ["logits"])],
        "broken",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [3, None])],
        [shape],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    buf = io.BytesIO()
    onnx.save(model, buf)
    return buf.getvalue()


def _infer(client: httpx.Client, name: str, x: np.ndarray, key: str, request_id: str = "q") -> httpx.Response:
    body = {
        "id": request_id,
        "inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": x.ravel().tolist()}],
    }
    return client.post(f"/v2/models/{name}/infer", json=body, headers={"Fermion-Routing-Key": key})


async def _logged(bus: Bus, subject: str, kind: type[E]) -> list[E]:
    """The event log's events of `kind` on `subject`, read as a tolerant consumer: the log is shared, and
    anything anyone published there (the bus fuzz's junk included) is skipped, not fatal."""
    found = []
    for m in await bus.history(subject):
        with contextlib.suppress(ValidationError):
            event = parse_event(m.data, kind)
            if isinstance(event, kind):
                found.append(event)
    return found


async def _rollout_events(bus: Bus, name: str) -> list[RolloutChange]:
    return [
        e.data for e in await _logged(bus, f"{subjects.MODELS_ROLLOUT}.>", ModelRollout) if e.data.model_name == name
    ]


async def _drive(
    client: httpx.Client, bus: Bus, name: str, until: str, *, timeout_s: float = 60.0, x: np.ndarray | None = None
) -> list[RolloutChange]:
    """Send requests (distinct routing keys) until a rollout event with action `until` is on the log."""
    x = np.full((1, 4), 0.25, np.float32) if x is None else x
    deadline, i = time.monotonic() + timeout_s, 0
    while time.monotonic() < deadline:
        for _ in range(40):
            _infer(client, name, x, key=f"user-{i}")
            i += 1
        events = await _rollout_events(bus, name)
        if any(e.action == until for e in events):
            return events
    pytest.fail(f"no rollout.{until} for {name} after {i} requests: {await _rollout_events(bus, name)}")


def _versions(registry: Registry, name: str, *models: bytes) -> None:
    for data in models:
        registry.register(TENANT, name, {"model.onnx": data}, linear_draft())
    registry.set_alias(TENANT, name, "production", 1)


FAST = Bounds(min_requests=20, min_labels=20, p99_slack_ms=50)  # sub-ms models on a shared machine: judge errors


async def test_a_canary_that_errors_is_rolled_back_with_the_reason(env, inference, bus, registry) -> None:
    _versions(registry, "errs", linear_onnx(seed=1), broken_onnx())
    Rollouts(registry).start(TENANT, "errs", "production", 2, steps=[10, 50, 100], bake_s=30, bounds=FAST)
    events = await _drive(inference, bus, "errs", "rolled_back")
    (rolled,) = [e for e in events if e.action == "rolled_back"]
    assert "error ratio 1.000" in rolled.reason and rolled.weights == {1: 100}, rolled
    assert rolled.observed["canary_requests"] >= 20
    assert registry.alias(TENANT, "errs", "production").split() == {1: 100}
    # Issue 27: what the rollout page reads (the controller's analysis), the serving series and the metrics.
    serving = ServingLog(registry.store)
    analysis = serving.analysis(TENANT, "errs", "production")
    assert analysis is not None and (analysis.decision, analysis.action) == ("rollback", "rolled_back")
    assert analysis.reason == rolled.reason and analysis.canary_traffic.error_ratio == 1.0
    assert analysis.canary_traffic.requests == rolled.observed["canary_requests"]

    def canary_errors_kept() -> bool:
        return any(w.version == 2 and w.errors > 0 for w in serving.windows(TENANT, "errs"))

    wait_until(canary_errors_kept, 30, "the monitor to keep the canary's serving window")
    windows = serving.windows(TENANT, "errs")
    assert sum(w.requests for w in windows if w.version == 1) > 0
    assert all(w.p99_ms is not None for w in windows if w.requests)
    metrics = httpx.get(f"http://127.0.0.1:{env['FERMION_METRICS_PORT']}/metrics", timeout=5).text
    actions = {
        (s.labels["model"], s.labels["action"]): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "fermion_monitor_rollout_actions_total"
    }
    assert actions[("errs", "rolled_back")] == 1


async def test_a_healthy_canary_reaches_100_percent_by_itself(inference, bus, registry) -> None:
    _versions(registry, "good", linear_onnx(seed=1), linear_onnx(seed=1))
    Rollouts(registry).start(TENANT, "good", "production", 2, steps=[10, 50, 100], bake_s=0.5, bounds=FAST)
    events = await _drive(inference, bus, "good", "promoted")
    events = [e for e in events if e.action != "waiting"]  # said while too few requests had come: fine
    assert [e.action for e in events] == ["stepped", "promoted"], events
    assert events[0].weights == {1: 50, 2: 50} and events[1].weights == {2: 100}
    record = registry.alias(TENANT, "good", "production")
    assert (record.version, record.rollout, record.history[-1]) == (2, None, 1)


async def test_a_canary_worse_on_submitted_labels_is_rolled_back(inference, bus, registry) -> None:
    _versions(registry, "acc", linear_onnx(seed=1), linear_onnx(seed=5))
    bounds = Bounds(min_requests=20, min_labels=20, max_p99_ratio=100)
    Rollouts(registry).start(TENANT, "acc", "production", 2, steps=[50, 100], bake_s=600, bounds=bounds)
    reference = linear_onnx(seed=1)
    import onnxruntime as ort

    truth = ort.InferenceSession(reference, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    deadline, n = time.monotonic() + 60, 0
    while time.monotonic() < deadline:
        labels = []
        for _ in range(40):
            x = rng.normal(size=(1, 4)).astype(np.float32)
            assert _infer(inference, "acc", x, key=f"u{n}", request_id=f"acc-{n}").status_code == 200
            labels.append(LabelEntry(request_id=f"acc-{n}", label=str(int(truth.run(None, {"input": x})[0].argmax()))))
            n += 1
        await bus.publish(LabelsSubmitted(tenant=TENANT, data=LabelBatch(model_name="acc", labels=labels)))
        events = await _rollout_events(bus, "acc")
        if any(e.action == "rolled_back" for e in events):
            break
    (rolled,) = [e for e in await _rollout_events(bus, "acc") if e.action == "rolled_back"]
    assert "online accuracy" in rolled.reason, rolled
    assert rolled.observed["incumbent_accuracy"] == 1.0 and rolled.observed["canary_accuracy"] < 0.95


async def test_without_traffic_the_controller_waits_instead_of_promoting(monitor, bus, registry) -> None:
    _versions(registry, "idle", linear_onnx(seed=1), linear_onnx(seed=1))
    record = Rollouts(registry).start(TENANT, "idle", "production", 2, steps=[10, 100], bake_s=0.2, bounds=FAST)
    change = RolloutChange(
        model_name="idle",
        alias="production",
        canary=2,
        incumbent=1,
        action="started",
        weights=record.split(),
        reason="test",
    )
    await bus.publish(ModelRollout(tenant=TENANT, data=change))
    deadline = time.monotonic() + 30
    while not any(e.action == "waiting" for e in await _rollout_events(bus, "idle")):
        assert time.monotonic() < deadline, "the controller never said it was waiting"
    assert registry.alias(TENANT, "idle", "production").split() == {1: 90, 2: 10}


# --- drift ---------------------------------------------------------------------------------------


def _drift_model(registry: Registry, name: str) -> np.random.Generator:
    """A linear model over 8 standard-normal features, with the reference profile of its training data."""
    rng = np.random.default_rng(11)
    x = rng.normal(size=(5000, N_FEATURES)).astype(np.float32)
    import onnxruntime as ort

    data = linear_onnx(n_in=N_FEATURES, n_out=3, seed=2)
    predicted = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"input": x})[0].argmax(1)
    draft = linear_draft(N_FEATURES, 3).model_copy(update={"profile": build_profile(x, predicted, 3).model_dump()})
    registry.register(TENANT, name, {"model.onnx": data}, Draft.model_validate(draft.model_dump()))
    registry.set_alias(TENANT, name, "production", 1)
    return rng


def _windows(monitor: FunctionProcess, name: str) -> int:
    return monitor.text().count(f" of {name} version 1:")


async def _drift_events(bus: Bus, name: str) -> list[DriftDetected]:
    events = await _logged(bus, subjects.MODELS_DRIFT_DETECTED, DriftDetected)
    return [e for e in events if e.data.model_name == name]


async def test_drift_no_alarm_in_distribution_then_shifted_features_named(inference, monitor, bus, registry) -> None:
    rng = _drift_model(registry, "sensors")
    for _ in range(20 * 10):  # 20 windows of 500 rows, 50 rows a request
        assert (
            _infer(inference, "sensors", rng.normal(size=(50, N_FEATURES)).astype(np.float32), "k").status_code == 200
        )
    wait_until(lambda: _windows(monitor, "sensors") >= 20, 60, "20 drift windows judged")
    false_alarms = len(await _drift_events(bus, "sensors"))
    print(f"\nin-distribution: {false_alarms} alarms in {_windows(monitor, 'sensors')} windows")
    assert false_alarms == 0
    judged_windows = await _logged(bus, subjects.MODELS_DRIFT_JUDGED, DriftJudged)
    calm = [e.data for e in judged_windows if e.data.model_name == "sensors"]
    assert len(calm) >= 20 and not any(w.features or w.prediction_drift for w in calm)  # every window on the log

    judged = _windows(monitor, "sensors")
    for _ in range(10):  # one window of shifted inputs: features 2 and 5 one standard deviation up
        x = rng.normal(size=(50, N_FEATURES)).astype(np.float32)
        x[:, [2, 5]] += 1.0
        assert _infer(inference, "sensors", x, "k").status_code == 200
    wait_until(lambda: _windows(monitor, "sensors") > judged, 30, "the shifted window judged")
    deadline = time.monotonic() + 10
    while not (alarms := await _drift_events(bus, "sensors")):
        assert time.monotonic() < deadline, "no drift_detected after the shifted window"
    assert alarms[0].data.features == ["f2", "f5"], alarms[0].data
    assert alarms[0].data.version == 1 and alarms[0].data.window == judged + 1


# The loop (drift → retraining → gate → canary) is set up and watched with the CLI alone on
# `fermion up`'s stack: tests/e2e/test_drift_loop.py.


async def test_a_shadow_is_compared_and_never_answers(inference, monitor, registry) -> None:
    _versions(registry, "shad", linear_onnx(seed=1), linear_onnx(seed=1))
    Rollouts(registry).set_shadow(TENANT, "shad", "production", 2)
    x = np.full((1, 4), 0.5, np.float32)

    def compared() -> int:
        found = re.findall(r"shadow v2 of shad beside v1: (\d+) compared in total, agreement ([0-9.]+)", monitor.text())
        return int(found[-1][0]) if found else 0

    deadline = time.monotonic() + 30
    while compared() < 50:
        r = _infer(inference, "shad", x, key="k")
        assert r.status_code == 200 and r.headers["Fermion-Model-Version"] == "1" == r.json()["model_version"]
        assert time.monotonic() < deadline, f"only {compared()} shadow comparisons reported"
    assert monitor.text().count("shadow v2 of shad beside v1") >= 1
    assert (
        re.findall(
            r"shadow v2 of shad beside v1: \d+ compared in total, agreement ([0-9.]+), 0 errors", monitor.text()
        )[-1]
        == "1.000"
    )
