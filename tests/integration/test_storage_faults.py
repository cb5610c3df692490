"""A full store: a clear 507, never a 500, and no temporary file left to fail the next write.

The store lives on a real, tiny tmpfs mounted for the test (root only: mounting needs it), so the
kernel itself answers ENOSPC; it is unmounted afterwards.
"""

from __future__ import annotations

import io
import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.events import Bus
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, LocalDirStore, Registry, StoreFull
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

pytestmark = pytest.mark.integration
SIZE = 256 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs to fill needs root")
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and ".locks" not in p.parts)


def test_a_full_disk_is_store_full_and_leaves_no_temporary_file(small_disk: Path, tmp_path: Path) -> None:
    store = LocalDirStore(small_disk / "store")
    registry = Registry(store, tmp_path / "cache")
    with pytest.raises(StoreFull, match="no room to write"):
        store.put("big", os.urandom(2 * SIZE), if_none_match=True)
    assert _files(small_disk) == []
    with pytest.raises(StoreFull):  # a version whose model cannot be written leaves nothing behind
        registry.register(
            "default", "m", {"model.onnx": linear_onnx(), "weights.bin": os.urandom(2 * SIZE)}, linear_draft()
        )
    assert registry.versions("default", "m") == []
    assert not [f for f in _files(small_disk) if ".tmp-" in f]
    store.put("small", b"fits", if_none_match=True)  # the space is still there for the next write
    assert store.get("small")[0] == b"fits"


@pytest.fixture
async def ingest(
    nats_server: NatsServer, bus: Bus, small_disk: Path, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    registry = Registry(LocalDirStore(small_disk / "store"), tmp_path / "cache")
    settings = IngestSettings(home=tmp_path, nats_url=nats_server.url)
    app = create_app(lambda: settings)
    app.dependency_overrides[get_datasets] = lambda: DatasetStore(registry.store)
    app.dependency_overrides[get_bus] = lambda: bus
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    headers = bearer(api_key(registry, "upload", "train"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers) as client:
        yield client


def _npz(rows: int) -> bytes:
    rng = np.random.default_rng(rows)
    buf = io.BytesIO()
    np.savez(buf, x=rng.normal(size=(rows, 8)).astype(np.float32), y=rng.integers(0, 2, rows))
    return buf.getvalue()


async def test_an_upload_to_a_full_store_is_a_507_and_the_next_small_one_succeeds(
    ingest: httpx.AsyncClient, small_disk: Path
) -> None:
    r = await ingest.post("/v1/datasets", files={"file": ("big.npz", _npz(20_000))})  # ~800 kB
    assert r.status_code == 507, r.text
    assert "the object store is full, nothing was accepted" in r.json()["error"]
    assert not [f for f in _files(small_disk) if ".tmp-" in f]
    r = await ingest.post("/v1/datasets", files={"file": ("small.npz", _npz(100))})
    assert r.status_code == 201, r.text
