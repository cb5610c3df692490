"""Readiness reflects a dependency that is down, in the route and in `fermion_dependency_up`, and
recovers by itself when it returns: a real nats-server stopped and started again under ingest; an
object store that stops answering under inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from fermion.functions.inference.app import create_app as inference_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.functions.ingest import deps as ingest_deps
from fermion.functions.ingest.app import create_app as ingest_app
from fermion.functions.ingest.deps import get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra.nats import NatsServer
from fermion.model_store import KeyStore, LocalDirStore, Registry, StoreUnavailable
from tests.helpers import api_key, bearer, free_port, linear_draft, linear_onnx, wait_until

pytestmark = pytest.mark.integration


def _up(client: TestClient, key: str, dependency: str) -> float | None:
    r = client.get("/metrics", headers=bearer(key))
    assert r.status_code == 200, r.text
    for line in r.text.splitlines():
        if line.startswith("fermion_dependency_up{") and f'dependency="{dependency}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return None


def test_ingest_is_not_ready_without_nats_and_recovers_when_it_returns(tmp_path: Path, registry: Registry) -> None:
    port = free_port()
    server = NatsServer(tmp_path / "nats", port=port).start()
    try:
        settings = IngestSettings(home=tmp_path, nats_url=server.url)
        app = ingest_app(lambda: settings)
        app.dependency_overrides[get_registry] = lambda: registry
        app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
        key = api_key(registry, "read")
        with TestClient(app) as client:
            wait_until(lambda: client.get("/readyz").status_code == 200, 20, "ready with NATS up")
            assert _up(client, key, "nats") == 1 and _up(client, key, "store") == 1
            server.stop()
            wait_until(lambda: client.get("/readyz").status_code == 503, 30, "not ready without NATS")
            r = client.get("/readyz").json()
            assert r["ready"] is False and "nats" in r["problems"] and "store" not in r["problems"]
            assert _up(client, key, "nats") == 0
            server = NatsServer(tmp_path / "nats", port=port).start()  # the same server comes back
            wait_until(lambda: client.get("/readyz").status_code == 200, 30, "ready again")
            assert _up(client, key, "nats") == 1
            bus = ingest_deps._BusHolder.bus  # the connection the routes made
        assert bus is not None and bus.closed  # closed at shutdown, not left to the garbage collector
    finally:
        server.stop()


class Outage(LocalDirStore):
    """A real local store that can be made to stop answering, as an unreachable S3 endpoint does."""

    down = False

    def get(self, key: str) -> tuple[bytes, str]:
        if self.down:
            raise StoreUnavailable("cannot reach the object store: connection refused")
        return super().get(key)


def test_inference_readiness_follows_the_store(tmp_path: Path) -> None:
    store = Outage(tmp_path / "store")
    registry = Registry(store, tmp_path / "cache")
    registry.register("default", "lin", {"model.onnx": linear_onnx()}, linear_draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    client = TestClient(inference_app(lambda: runtime, lambda: settings))
    key = api_key(registry, "read", "infer")
    assert client.get("/v2/health/ready").status_code == 200
    body = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": np.ones(4).tolist()}]}
    assert client.post("/v2/models/lin/infer", json=body, headers=bearer(key)).status_code == 200
    store.down = True
    try:
        wait_until(lambda: client.get("/v2/health/ready").status_code == 503, 10, "not ready without the store")
        assert "connection refused" in client.get("/v2/health/ready").json()["problems"]["store"]
        assert _up(client, key, "store") == 0  # the gauge says so too (the key's record is cached)
    finally:
        store.down = False
    wait_until(lambda: client.get("/v2/health/ready").status_code == 200, 10, "ready again")
