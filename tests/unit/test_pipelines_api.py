"""Pipeline rules and drift over ingest's HTTP API (issue 31): the whole rule in, bad rules named, drift windows out.

In process, with the event log a fake holding real encoded events; the loop on the real stack, driven by
the CLI alone, is tests/e2e/test_drift_loop.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from fermion.events import (
    DriftDetected,
    DriftJudged,
    DriftReport,
    Event,
    ProgressReport,
    StoredMessage,
    TrainingProgress,
    cloudevent,
)
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_keys, get_registry
from fermion.functions.ingest.pipelines_api import bus_if_up
from fermion.functions.ingest.settings import IngestSettings
from fermion.model_store import KeyStore, LocalDirStore, Registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx


class Log:
    """The event log as ingest reads it: `history` by subject, `queued_jobs` empty."""

    def __init__(self, *events: Event) -> None:
        self.events = list(events)

    async def history(self, subject: str) -> list[StoredMessage]:
        prefix = subject.removesuffix(">")
        return [
            StoredMessage(i, e.subject, cloudevent.encode(e), {})
            for i, e in enumerate(self.events)
            if e.subject == subject or (subject.endswith(">") and e.subject.startswith(prefix))
        ]

    async def queued_jobs(self) -> list[StoredMessage]:
        return []


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[TestClient, Registry, Log]]:
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    log = Log()
    app = create_app(lambda: IngestSettings(home=tmp_path, nats_url="nats://127.0.0.1:1", metrics=False))
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    app.dependency_overrides[get_bus] = lambda: log
    app.dependency_overrides[bus_if_up] = lambda: log
    with TestClient(app, headers=bearer(api_key(registry, "admin"))) as client:
        yield client, registry, log


DRIFT_RULE = {
    "on": "drift",
    "dataset": "wine",
    "model_name": "wine",
    "recipe": {"epochs": 3},
    "gate": {"metric": "accuracy", "not_worse_than_current": False, "canary": [10, 50, 100], "bake_s": 600},
}


def test_a_drift_rule_with_a_canary_gate_is_taken_whole_and_shown(world) -> None:
    client, _, log = world
    put = client.put("/v1/pipelines/wine-drift", json=DRIFT_RULE)
    assert put.status_code == 200, put.text
    (rule,) = client.get("/v1/pipelines").json()
    assert (rule["on"], rule["dataset"], rule["dataset_prefix"], rule["model_name"]) == (
        "drift",
        "wine",
        "wine",
        "wine",
    )
    assert rule["gate"]["canary"] == [10, 50, 100] and rule["gate"]["bake_s"] == 600
    assert rule["recipe"]["epochs"] == 3 and rule["last_fired"] is None

    progress = ProgressReport(job_id="wine-drift.drift.v1", model_name="wine", epoch=1, epochs=3)
    log.events += [TrainingProgress(data=progress), TrainingProgress(tenant="other", data=progress)]
    (rule,) = client.get("/v1/pipelines").json()
    assert rule["last_fired"]["job_id"] == "wine-drift.drift.v1" and rule["last_fired"]["state"] == "running"


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"dataset": None}, "a drift rule needs dataset"),
        ({"on": "upload"}, "dataset names what a drift rule retrains on"),
        ({"on": "upload", "dataset": None}, "an upload rule needs dataset_prefix"),
        ({"gate": {"canary": [50, 10]}}, "gate.canary: rollout steps must climb"),
        ({"gate": {"canary": [10, 150]}}, "gate.canary"),
        ({"on": "retrain"}, "on"),
        ({"recipe": {"epochs": 0}}, "epochs"),
    ],
)
def test_a_bad_rule_is_refused_with_its_problem_named(world, change: dict[str, Any], needle: str) -> None:
    client, _, _ = world
    r = client.put("/v1/pipelines/bad", json={**DRIFT_RULE, **change})
    assert r.status_code == 422 and needle in r.json()["error"], r.text
    assert client.get("/v1/pipelines").json() == []


def test_an_upload_rule_as_before(world) -> None:
    client, _, _ = world
    body = {"dataset_prefix": "blobs", "model_name": "blobs", "gate": {"minimum": 0.9}}
    r = client.put("/v1/pipelines/blobs-prod", json=body)
    assert r.status_code == 200, r.text
    assert (r.json()["on"], r.json()["dataset"], r.json()["gate"]["canary"]) == ("upload", None, [])


def _report(version: int, window: int, features: list[str]) -> DriftReport:
    psi = {f"f{i}": 0.5 if f"f{i}" in features else 0.01 for i in range(3)}
    ks = {f: 1e-9 if f in features else 0.8 for f in psi}
    return DriftReport(
        model_name="sensors", version=version, window=window, rows=500, features=features, psi=psi, ks_pvalue=ks
    )


def test_drift_shows_recent_windows_per_feature_and_the_last_alarm(world) -> None:
    client, registry, log = world
    assert client.get("/v1/models/sensors/drift").status_code == 404
    registry.register("default", "sensors", {"model.onnx": linear_onnx()}, linear_draft())
    empty = client.get("/v1/models/sensors/drift").json()
    assert empty == {"name": "sensors", "windows": [], "last_alarm": None}

    calm = [DriftJudged(data=_report(1, i, [])) for i in range(1, 4)]
    moved = _report(1, 4, ["f2"])
    other = DriftJudged(tenant="other", data=_report(1, 9, ["f0"]))
    log.events += [*calm, other, DriftJudged(data=moved), DriftDetected(data=moved)]
    state = client.get("/v1/models/sensors/drift", params={"limit": 2}).json()
    assert [(w["window"], w["alarm"], w["features"]) for w in state["windows"]] == [(3, False, []), (4, True, ["f2"])]
    assert state["windows"][1]["psi"]["f2"] == 0.5 and state["windows"][1]["ks_pvalue"]["f2"] == 1e-9
    assert state["last_alarm"]["features"] == ["f2"] and state["last_alarm"]["window"] == 4
    assert client.get("/v1/models/sensors/drift", params={"version": 2}).json()["windows"] == []


def test_the_openapi_document_describes_the_rule_and_the_drift_route() -> None:
    document = create_app(lambda: IngestSettings(nats_url="nats://127.0.0.1:1", metrics=False)).openapi()
    schemas = document["components"]["schemas"]
    spec = schemas["PipelineSpec"]["properties"]
    for field in ("on", "dataset_prefix", "dataset", "model_name", "recipe", "gate"):
        assert spec[field].get("description"), field
    assert spec["on"]["enum"] == ["upload", "drift"]
    for field in ("alias", "metric", "minimum", "not_worse_than_current", "canary", "bake_s"):
        assert schemas["Gate"]["properties"][field].get("description"), field
    assert "last_fired" in schemas["Pipeline"]["properties"]
    drift = document["paths"]["/v1/models/{name}/drift"]["get"]
    assert drift["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/DriftState")
