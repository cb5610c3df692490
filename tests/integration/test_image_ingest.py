"""Archives of pictures at the ingest door: refused with a reason and nothing stored, or stored and announced;
and the ingest function stays responsive while it checks a large one."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from fermion.events import Bus, DatasetUploaded, parse_event
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, LocalDirStore, Registry
from tests.helpers import api_key, bearer, free_port
from tests.helpers.pictures import bomb_png, gif, jpeg, png, zip_bytes

pytestmark = pytest.mark.integration


def _picture(seed: int, size: tuple[int, int] = (12, 12)) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8), "L")


def _good() -> dict[str, bytes]:
    return {f"{c}/{i}.png": png(_picture(10 * ord(c) + i)) for c in "xy" for i in range(3)}


@pytest.fixture
async def ingest(
    nats_server: NatsServer, bus: Bus, tmp_path: Path
) -> AsyncIterator[tuple[httpx.AsyncClient, Registry]]:
    registry = Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")
    settings = IngestSettings(home=tmp_path, nats_url=nats_server.url, max_picture_pixels=1_000_000)
    datasets = DatasetStore(registry.store)
    app = create_app(lambda: settings)
    app.dependency_overrides[get_datasets] = lambda: datasets
    app.dependency_overrides[get_bus] = lambda: bus
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    headers = bearer(api_key(registry, "upload"))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers) as client:
        yield client, registry


async def test_an_archive_of_pictures_is_stored_and_announced(ingest, bus: Bus) -> None:
    client, registry = ingest
    since = datetime.now(UTC)
    members = {**_good(), "x/photo.jpg": jpeg(_picture(99, (30, 40)).convert("RGB"))}
    data = zip_bytes(members)
    r = await client.post("/v1/datasets", files={"file": ("Pictures.zip", data)})
    assert r.status_code == 201, r.text
    ref = r.json()
    assert (ref["name"], ref["format"], ref["size"]) == ("pictures", "zip", len(data))
    assert registry.store.get(f"datasets/default/pictures/{ref['sha256']}.zip")[0] == data
    events = bus.watch("fermion.datasets.uploaded", since=since)
    try:
        while (event := parse_event(await anext(events), DatasetUploaded)).data.sha256 != ref["sha256"]:
            pass
    finally:
        await events.aclose()
    assert event.data.format == "zip"


@pytest.mark.parametrize(
    ("members", "problem"),
    [
        ({"x/1.png": bomb_png(100_000, 100_000)}, "x/1.png: refused before decoding"),
        ({"x/1.png": bomb_png(2000, 2000)}, "x/1.png: PNG of 2000x2000 = 4000000 pixels is over the limit of 1000000"),
        ({"x/1.png": png(_picture(1, (64, 64)))[:200]}, "x/1.png: PNG does not decode"),
        ({"x/1.png": b"\x89PNG\r\n\x1a\n" + bytes(range(64))}, "x/1.png: a PNG or JPEG whose header is corrupt"),
        ({"x/1.png": gif(_picture(1))}, "x/1.png: unsupported format GIF"),
        ({"x/notes.txt": b"hello"}, "x/notes.txt: not a picture"),
        ({"z/": b""}, "class folder 'z' holds no pictures"),
    ],
    ids=["bomb", "over-limit", "truncated", "corrupt", "gif", "not-a-picture", "empty-class"],
)
async def test_a_bad_archive_is_a_400_naming_the_file_and_nothing_is_stored(
    ingest, members: dict, problem: str
) -> None:
    client, registry = ingest
    r = await client.post("/v1/datasets", files={"file": ("bad.zip", zip_bytes({**_good(), **members}))})
    assert r.status_code == 400, r.text
    assert problem in r.json()["error"]
    assert registry.store.children("datasets/default/bad/") == []
    r = await client.post("/v1/datasets", files={"file": ("bad.zip", b"PK\x03\x04 not really")})
    assert r.status_code == 400 and "not a readable zip archive" in r.json()["error"]


@pytest.fixture
def ingest_process(nats_server: NatsServer, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The ingest function as its own uvicorn process, as `fermion up` runs it; and an upload key."""
    port = free_port()
    _, key = KeyStore(LocalDirStore(tmp_path / "store")).create("default", ["upload"])
    env = {
        **os.environ,
        "FERMION_HOME": str(tmp_path),
        "FERMION_NATS_URL": nats_server.url,
        "FERMION_STORE_URL": (tmp_path / "store").as_uri(),
    }
    argv = [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen([*argv, "fermion.functions.ingest.app:app"], env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    yield url, key
    proc.terminate()
    proc.wait(10)


def test_ingest_stays_responsive_while_it_checks_a_large_archive(ingest_process: tuple[str, str]) -> None:
    url, key = ingest_process
    # 60 pictures of 3000x3000 pixels: a small zip (they compress well) that takes seconds to decode.
    stripes = np.tile((np.arange(3000) % 256).astype(np.uint8), (3000, 1))
    one = png(Image.fromarray(stripes, "L"))
    data = zip_bytes({f"{c}/{i}.png": one for c in "ab" for i in range(30)})
    outcome: dict[str, object] = {}

    def upload() -> None:
        started = time.perf_counter()
        r = httpx.post(f"{url}/v1/datasets", files={"file": ("large.zip", data)}, headers=bearer(key), timeout=110)
        outcome.update(status=r.status_code, text=r.text, seconds=time.perf_counter() - started)

    uploader = threading.Thread(target=upload)
    uploader.start()
    latencies = []
    with httpx.Client(timeout=30) as client:
        while uploader.is_alive():
            started = time.perf_counter()
            assert client.get(f"{url}/healthz").status_code == 200
            latencies.append(time.perf_counter() - started)
            time.sleep(0.02)
    uploader.join()
    seconds = float(outcome["seconds"])  # type: ignore[arg-type]
    # Checked on the event loop, /healthz would wait out the whole check (about `seconds`).
    assert len(latencies) >= 5, (latencies, seconds)
    assert max(latencies) < min(1.0, seconds / 3), (max(latencies), seconds)
    assert outcome["status"] == 201, outcome["text"]
