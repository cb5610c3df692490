"""Rollouts safe and visible, serving per version (issue 27): refused moves, the controller's analysis, windows.

In process: the real registry on a local directory, the real controller and ingest app, the event
bus a fake that keeps what is published; the loop on a real stack is tests/integration/test_rollouts.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from fermion.events import Event
from fermion.events.traffic import VersionStats
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.functions.monitor.controller import Controller
from fermion.functions.monitor.ledger import Accuracy, Ledger
from fermion.functions.monitor.traffic import TrafficWindows
from fermion.model_store import Bounds, KeyStore, LocalDirStore, Registry, Rollouts, ServingLog
from fermion.service.observability.monitor import MonitorMetrics
from tests.helpers import api_key, bearer, linear_draft, linear_onnx


class Published:
    """The bus as the routes and the controller use it: what is published is kept."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    async def publish(self, event: Event) -> None:
        self.events.append(event)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, Registry, Published]]:
    """Versions 1 to 3 of `wine`, `production` at version 1, an ingest app with a `promote` and `read` key."""
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    for seed in (1, 2, 3):
        registry.register("default", "wine", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    registry.set_alias("default", "wine", "production", 1)
    bus = Published()
    app = create_app(lambda: IngestSettings(home=tmp_path, nats_url="nats://127.0.0.1:1", metrics=False))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    app.dependency_overrides[get_bus] = lambda: bus
    with TestClient(app, headers=bearer(api_key(registry, "promote", "read"))) as client:
        yield client, registry, bus


def _stats(version: int, requests: int, errors: int, latency_ms: float) -> VersionStats:
    return VersionStats(
        tenant="default",
        name="wine",
        alias="production",
        version=version,
        requests=requests,
        errors=errors,
        latency_ms=[latency_ms] * requests,
    )


def test_a_promote_or_rollback_during_a_rollout_is_refused_naming_it_unless_aborted(world) -> None:
    client, registry, _ = world
    started = client.post("/v1/models/wine/aliases/production/canary", json={"version": 2, "steps": [10, 50, 100]})
    assert started.status_code == 200, started.text
    assert started.json()["split"] == {"1": 90, "2": 10}
    serving = {"latest": {"3": 100}, "production": {"1": 90, "2": 10}}
    assert client.get("/v1/models/wine").json()["splits"] == serving
    (listed,) = client.get("/v1/models").json()  # the list says what each alias serves, as the model's page does
    assert listed["splits"] == serving and listed["aliases"] == {"latest": 3, "production": 1}

    promoted = client.put("/v1/models/wine/aliases/production", json={"version": 3})
    assert promoted.status_code == 409, promoted.text
    assert "wine@production is rolling out version 2 over version 1 (v1 90%, v2 10%" in promoted.json()["error"]
    assert "--abort-rollout" in promoted.json()["error"]
    rolled = client.post("/v1/models/wine/aliases/production/rollback")
    assert rolled.status_code == 409 and "rolling back would end it" in rolled.json()["error"]
    assert registry.alias("default", "wine", "production").split() == {1: 90, 2: 10}  # nothing moved

    aborted = client.put("/v1/models/wine/aliases/production", json={"version": 3, "abort_rollout": True})
    assert aborted.status_code == 200, aborted.text
    record = registry.alias("default", "wine", "production")
    assert (record.version, record.rollout, record.split()) == (3, None, {3: 100})

    client.post("/v1/models/wine/aliases/production/canary", json={"version": 2})
    back = client.post("/v1/models/wine/aliases/production/rollback", params={"abort_rollout": "true"})
    assert back.status_code == 200 and back.json()["version"] == 3, back.text
    assert registry.alias("default", "wine", "production").rollout is None


def test_the_rollout_status_carries_steps_bake_time_and_the_controllers_comparison(world) -> None:
    client, registry, bus = world
    Rollouts(registry).start(
        "default", "wine", "production", 2, steps=[10, 50, 100], bake_s=0, bounds=Bounds(min_requests=5)
    )
    metrics = MonitorMetrics(CollectorRegistry())
    ledger = Ledger()
    controller = Controller(
        bus,  # type: ignore[arg-type]
        registry,
        lambda t, n, v: ledger.accuracy.get((t, n, v), Accuracy()),
        serving=ServingLog(registry.store),
        metrics=metrics,
    )
    before = client.get("/v1/models/wine/aliases/production/canary").json()
    assert before["analysis"] is None
    assert [s["state"] for s in before["progress"]["steps"]] == ["current", "next", "next"]
    assert (before["progress"]["weight"], before["progress"]["bake_left_s"]) == (10, 0)

    controller.watch("default", "wine", "production")
    asyncio.run(controller.tick())  # the step is observed from its first tick: no canary traffic yet
    waiting = client.get("/v1/models/wine/aliases/production/canary").json()["analysis"]
    assert (waiting["decision"], waiting["action"]) == ("waiting", None)
    assert waiting["reason"] == "canary answered 0 of the 5 requests needed"
    controller.record(_stats(1, 90, 0, 2.0))
    controller.record(_stats(2, 10, 0, 3.0))
    asyncio.run(controller.tick())  # within bounds and baked: the next step

    state = client.get("/v1/models/wine/aliases/production/canary").json()
    assert state["split"] == {"1": 50, "2": 50}
    assert [s["state"] for s in state["progress"]["steps"]] == ["done", "current", "next"]
    seen = state["analysis"]
    assert (seen["decision"], seen["action"], seen["weight"], seen["step"]) == ("step", "stepped", 10, 0)
    assert seen["canary_traffic"] == {
        "version": 2,
        "requests": 10,
        "errors": 0,
        "error_ratio": 0.0,
        "p99_ms": 3.0,
        "labelled": 0,
        "accuracy": None,
    }
    assert seen["incumbent_traffic"]["requests"] == 90 and seen["bounds"]["min_requests"] == 5

    asyncio.run(controller.tick())  # the new step's first tick
    controller.record(_stats(2, 20, 10, 3.0))  # half the canary's answers fail: rolled back, and why
    controller.record(_stats(1, 20, 0, 2.0))
    asyncio.run(controller.tick())
    ended = client.get("/v1/models/wine/aliases/production/canary").json()
    assert ended["progress"] is None and ended["split"] == {"1": 100}
    assert (ended["analysis"]["decision"], ended["analysis"]["action"]) == ("rollback", "rolled_back")
    assert ended["analysis"]["reason"].startswith("error ratio 0.500 over the incumbent's 0.000")
    assert [e.data.action for e in bus.events] == ["waiting", "stepped", "waiting", "rolled_back"]

    samples = _samples(metrics.registry)
    assert samples[("fermion_monitor_rollout_actions_total", ("action", "stepped"))] == 1
    assert samples[("fermion_monitor_rollout_actions_total", ("action", "rolled_back"))] == 1
    assert not [k for k in samples if k[0] == "fermion_monitor_rollout_canary_weight_percent"]  # ended: gone


def test_each_versions_serving_is_kept_window_by_window_and_served(world) -> None:
    client, registry, _ = world
    log, windows = ServingLog(registry.store), TrafficWindows()
    t0 = (datetime.now(UTC) - timedelta(minutes=10)).replace(second=0, microsecond=0)
    windows.opened = t0
    windows.add(_stats(1, 100, 2, 4.0))
    windows.add(_stats(2, 10, 1, 8.0))
    accuracy = {("default", "wine", 1): Accuracy(labelled=10, correct=9)}
    first = windows.close(accuracy, now=t0 + timedelta(seconds=30))
    assert [(w.version, w.requests, w.errors, w.p99_ms, w.labelled) for w in first[("default", "wine")]] == [
        (1, 100, 2, 4.0, 10),
        (2, 10, 1, 8.0, 0),
    ]
    log.append("default", "wine", first[("default", "wine")])
    windows.add(_stats(1, 50, 0, 6.0))
    accuracy[("default", "wine", 1)] = Accuracy(labelled=14, correct=11)  # 4 more labels, 2 of them right
    log.append("default", "wine", windows.close(accuracy, now=t0 + timedelta(seconds=60))[("default", "wine")])

    served = client.get("/v1/models/wine/serving", params={"window": 3600})
    assert served.status_code == 200, served.text
    body = served.json()
    v1, v2 = body["versions"]
    assert [(p["requests"], p["rate_per_s"], p["error_ratio"], p["p99_ms"], p["accuracy"]) for p in v1["points"]] == [
        (100, 3.333333, 0.02, 4.0, 0.9),
        (50, 1.666667, 0.0, 6.0, 0.5),
    ]
    assert (v1["requests"], v1["errors"], v1["labelled"], v1["accuracy"]) == (150, 2, 14, round(11 / 14, 6))
    assert (v2["version"], v2["error_ratio"], v2["points"][0]["accuracy"]) == (2, 0.1, None)

    merged = client.get("/v1/models/wine/serving", params={"step": 60, "version": 1}).json()
    (only,) = merged["versions"]
    (point,) = only["points"]
    assert (point["requests"], point["seconds"], point["p99_ms"]) == (150, 60.0, round((4.0 * 100 + 6.0 * 50) / 150, 3))
    assert client.get("/v1/models/wine/serving", params={"window": 300}).json()["versions"] == []
    assert client.get("/v1/models/nothing/serving").status_code == 404


def test_the_monitor_exports_drift_accuracy_and_rollout_metrics() -> None:
    metrics = MonitorMetrics(CollectorRegistry())
    metrics.judged_window("default", "wine", 2, alarm=True, max_psi=0.4, prediction_psi=0.1, drifted=2)
    metrics.labelled("default", "wine", 2, True, 1.0)
    metrics.labelled("default", "wine", 2, False, 0.5)
    key = ("default", "wine", "production")
    seen: dict[str, Any] = {"canary_error_ratio": 0.1, "incumbent_error_ratio": 0.0, "canary_p99_ms": 30.0}
    seen |= {"incumbent_p99_ms": 10.0, "canary_accuracy": 0.8, "incumbent_accuracy": 0.9}
    metrics.compared(key, 2, 1, 10, seen)
    samples = _samples(metrics.registry)
    assert samples[("fermion_monitor_drift_windows_total", ("alarm", "true"))] == 1
    assert samples[("fermion_monitor_drift_psi_max", ())] == 0.4
    assert samples[("fermion_monitor_online_accuracy_ratio", ())] == 0.5
    assert samples[("fermion_monitor_labelled_predictions_total", ("correct", "false"))] == 1
    assert samples[("fermion_monitor_rollout_canary_weight_percent", ())] == 10
    assert samples[("fermion_monitor_rollout_p99_seconds", ("role", "canary"))] == 0.03
    metrics.ended(key)
    assert not [k for k in _samples(metrics.registry) if "rollout" in k[0] and "actions" not in k[0]]


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[str, ...]], float]:
    """Samples by name and their one distinguishing label (the rest: default, wine, 2 or production)."""
    common = {"tenant", "model", "version", "alias", "canary", "incumbent"}
    found = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            rest = tuple(x for kv in sorted(s.labels.items()) if kv[0] not in common for x in kv)
            found[(s.name, rest)] = s.value
    return found
