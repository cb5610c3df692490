"""Starting a federation: the HTTP router publishes federated.requested (the CLI, over HTTP: test_cli_over_http.py)."""

from __future__ import annotations

import io
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.events import Bus
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, LocalDirStore
from tests.helpers import bearer
from tests.helpers.federations import federation_body, requested

pytestmark = pytest.mark.integration
HOLDOUT = {"name": "digits-holdout"}


async def test_http_starts_a_federation(bus: Bus, nats_server: NatsServer, tmp_path: Path) -> None:
    datasets = DatasetStore(LocalDirStore(tmp_path / "store"))
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((20, 64), np.float32), y=np.arange(20) % 10)
    stored = datasets.put("default", "digits-holdout", buf.getvalue(), "npz")
    api = create_app(lambda: IngestSettings(home=tmp_path, nats_url=nats_server.url))
    api.dependency_overrides[get_bus] = lambda: bus
    api.dependency_overrides[get_datasets] = lambda: datasets
    api.dependency_overrides[get_keys] = lambda: KeyStore(datasets.store)
    _, key = KeyStore(datasets.store).create("default", ["train"])
    transport = httpx.ASGITransport(app=api)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=bearer(key)) as client:
        ok = await client.post("/v1/federations", json=federation_body(HOLDOUT))
        missing = await client.post("/v1/federations", json=federation_body({"name": "nope"}))
        no_quorum = await client.post("/v1/federations", json=federation_body(HOLDOUT, min_updates=4))
        once = federation_body(
            HOLDOUT
        )  # a retry carries the same Idempotency-Key: the same federation, not a second one
        retried = [await client.post("/v1/federations", json=once, headers={"Idempotency-Key": "fed-1"}) for _ in "ab"]
    assert ok.status_code == 202, ok.text
    event = await requested(bus, ok.json()["federation_id"])
    assert event.data.holdout.sha256 == stored.sha256 and event.data.min_updates == 2
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    assert no_quorum.status_code == 400 and "min_updates" in no_quorum.json()["error"]
    assert retried[0].json()["federation_id"] == retried[1].json()["federation_id"] != ok.json()["federation_id"]
