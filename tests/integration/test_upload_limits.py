"""An upload that is a decompression bomb is a 413 over HTTP, and nothing of it is stored or announced."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.events import Bus
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, Registry
from tests.helpers import api_key, bearer

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingest(
    nats_server: NatsServer, bus: Bus, registry: Registry, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(home=tmp_path, nats_url=nats_server.url, max_expanded_bytes=32 << 20)
    app = create_app(lambda: settings)
    app.dependency_overrides[get_datasets] = lambda: DatasetStore(registry.store)
    app.dependency_overrides[get_bus] = lambda: bus
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    headers = bearer(api_key(registry, "upload", "train"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers) as client:
        yield client


async def test_a_zip_bomb_upload_is_a_413_and_nothing_is_stored(ingest: httpx.AsyncClient, registry: Registry) -> None:
    buf = io.BytesIO()
    np.savez_compressed(buf, x=np.zeros((1 << 20, 64), np.float32), y=np.zeros(1 << 20))  # 264 MB in ~260 kB
    r = await ingest.post("/v1/datasets", files={"file": ("bomb.npz", buf.getvalue())})
    assert r.status_code == 413, r.text
    assert "FERMION_MAX_EXPANDED_BYTES" in r.json()["error"]
    assert list(registry.store.list("datasets/")) == []
    assert (await ingest.get("/healthz")).status_code == 200
