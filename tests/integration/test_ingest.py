"""The ingest function against a real nats-server and a real local store."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import numpy as np
import pytest

from fermion.events import Bus, DatasetRef, DatasetUploaded, parse_event
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, Registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

pytestmark = pytest.mark.integration


@pytest.fixture
async def ingest(
    nats_server: NatsServer, bus: Bus, registry: Registry, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngestSettings(home=tmp_path, nats_url=nats_server.url, max_upload_bytes=200_000)
    datasets = DatasetStore(registry.store)
    app = create_app(lambda: settings)
    app.dependency_overrides[get_datasets] = lambda: datasets
    app.dependency_overrides[get_bus] = lambda: bus
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    transport = httpx.ASGITransport(app=app)
    headers = bearer(api_key(registry, "admin"))
    async with httpx.AsyncClient(transport=transport, base_url="http://ingest", headers=headers) as client:
        yield client


def _npz(n: int = 20) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, x=np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32), y=np.arange(n) % 2)
    return buf.getvalue()


async def _next_event(bus: Bus, subject: str, since) -> bytes:  # type: ignore[no-untyped-def]
    events = bus.watch(subject, since=since)
    try:
        return await asyncio.wait_for(anext(events), 5)
    finally:
        await events.aclose()


async def test_upload_stores_by_sha256_and_announces_it(
    ingest: httpx.AsyncClient, bus: Bus, registry: Registry
) -> None:
    since = datetime.now(UTC)
    data = _npz(n=20 + int(datetime.now(UTC).timestamp() * 1000) % 1000)  # unique: its event id is its content
    r = await ingest.post("/v1/datasets", files={"file": ("Toy.npz", data)}, data={"name": "toy"})
    assert r.status_code == 201, r.text
    ref = r.json()
    assert (ref["name"], ref["format"], ref["size"]) == ("toy", "npz", len(data))
    stored, _ = registry.store.get(f"datasets/default/toy/{ref['sha256']}.npz")
    assert stored == data
    event = parse_event(await _next_event(bus, "fermion.datasets.uploaded", since), DatasetUploaded)
    assert event.data.sha256 == ref["sha256"]

    r = await ingest.post(
        "/v1/trainings",
        json={"model_name": "toy", "dataset": {"name": "toy"}, "recipe": {"architecture": "mlp", "epochs": 2}},
    )
    assert r.status_code == 202, r.text
    assert r.json()["dataset"]["sha256"] == ref["sha256"]


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("data.txt", b"abc", "unsupported file 'data.txt'"),
        ("data.npz", b"not a zip", "not a readable .npz"),
        ("data.csv", b"\xff\xfe\x00", "not UTF-8"),
        ("data.csv", b"onlyonecolumn\n1\n", "header row"),
    ],
)
async def test_malformed_uploads_are_a_400_naming_the_problem(
    ingest: httpx.AsyncClient, filename: str, content: bytes, message: str
) -> None:
    r = await ingest.post("/v1/datasets", files={"file": (filename, content)})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]


async def test_npz_without_labels_and_oversized_uploads_are_refused(ingest: httpx.AsyncClient) -> None:
    buf = io.BytesIO()
    np.savez(buf, x=np.zeros((3, 2)))
    r = await ingest.post("/v1/datasets", files={"file": ("d.npz", buf.getvalue())})
    assert r.status_code == 400 and "lacks array(s) ['y']" in r.json()["error"]
    r = await ingest.post("/v1/datasets", files={"file": ("d.npz", b"0" * 300_000)})
    assert r.status_code == 413
    assert "200000 bytes (FERMION_MAX_UPLOAD_BYTES" in r.json()["error"]  # the limit and its setting
    r = await ingest.post("/v1/datasets", files={"file": ("d.npz", _npz())}, data={"name": "../escape"})
    assert r.status_code == 400 and "invalid dataset name" in r.json()["error"]


async def test_training_requests_are_validated(ingest: httpx.AsyncClient) -> None:
    r = await ingest.post("/v1/trainings", json={"model_name": "m", "dataset": {"name": "never-uploaded"}})
    assert r.status_code == 404 and "upload it first" in r.json()["error"]
    r = await ingest.post("/v1/trainings", json={"model_name": "m", "dataset": {"name": "d"}, "recipe": {"epochs": 0}})
    assert r.status_code == 422 and "recipe.epochs" in r.json()["error"]
    r = await ingest.post("/v1/trainings", json={"model_name": "m", "dataset": {"name": "d"}, "colour": "red"})
    assert r.status_code == 422 and "colour" in r.json()["error"]


async def test_what_the_contract_test_found_is_a_documented_422(ingest: httpx.AsyncClient) -> None:
    # tests/integration/test_contract.py found these: a JSON body that is not UTF-8 was FastAPI's
    # undocumented 400, a key living longer than a date can say was a 500 (timedelta overflow).
    r = await ingest.post("/v1/keys", content=b"\xff\x7f", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "body: not readable (UnicodeDecodeError" in r.json()["error"], r.text
    for forever in (1e30, "Infinity"):
        body = {"tenant": "t", "scopes": ["read"], "expires_in_s": forever}
        r = await ingest.post("/v1/keys", json=body)
        assert r.status_code == 422 and "expires_in_s" in r.json()["error"], r.text


@pytest.mark.parametrize(
    "body",
    [
        {"model_name": "m", "dataset": {"name": "a..b"}},
        {"model_name": "a..b", "dataset": {"name": "d"}},
        {"model_name": "m", "dataset": {"name": "d"}, "tenant": "a..b"},
    ],
)
@pytest.mark.parametrize("route", ["/v1/trainings", "/v1/sweeps"])
async def test_names_with_two_dots_are_refused_at_the_door(ingest: httpx.AsyncClient, route: str, body: dict) -> None:
    if route == "/v1/sweeps":
        body = {**body, "trials": [{"epochs": 1}]}
    r = await ingest.post(route, json=body)
    assert r.status_code == 422, r.text
    assert "should match pattern" in r.json()["error"]


async def test_the_same_event_published_twice_is_stored_once(bus: Bus) -> None:
    ref = DatasetRef(name="d", sha256="c" * 64, uri="file:///d", format="npz", size=1)
    event = DatasetUploaded(data=ref)
    stored = [await bus.publish(event) for _ in range(5)]
    assert stored == [True, False, False, False, False]
    assert await bus.publish(DatasetUploaded(data=ref)) is True  # a new id is a new event


async def test_the_registry_over_http(ingest: httpx.AsyncClient, registry: Registry, bus: Bus) -> None:
    for i in range(3):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=i)}, linear_draft())
    listing = (await ingest.get("/v1/models")).json()
    assert listing == [
        {
            "name": "m",
            "versions": [1, 2, 3],
            "aliases": {"latest": 3, "production": 1},  # the first version bootstraps production
            "splits": {"latest": {"3": 100}, "production": {"1": 100}},
        }
    ]
    versions = (await ingest.get("/v1/models/m")).json()["versions"]
    assert [v["version"] for v in versions] == [1, 2, 3] and versions[0]["metrics"] == {"accuracy": 0.5}
    manifest = (await ingest.get("/v1/models/m/versions/2")).json()
    assert manifest["files"]["model.onnx"]["size"] == len(linear_onnx(seed=1))

    since = datetime.now(UTC)
    r = await ingest.put("/v1/models/m/aliases/staging", json={"version": 1, "create_only": True})
    assert r.status_code == 200 and r.json()["previous_version"] is None and r.json()["announced"] is True
    event = parse_event(await _next_event(bus, "fermion.models.promoted", since))
    assert (event.data.alias, event.data.version) == ("staging", 1)  # type: ignore[attr-defined]

    r = await ingest.put("/v1/models/m/aliases/staging", json={"version": 2, "expected_version": 1})
    assert r.status_code == 200
    r = await ingest.put("/v1/models/m/aliases/staging", json={"version": 3, "expected_version": 1})
    assert r.status_code == 409 and "points to version 2, not 1" in r.json()["error"]
    r = await ingest.post("/v1/models/m/aliases/staging/rollback")
    assert r.json()["version"] == 1 and registry.resolve("default", "m", "staging") == 1
    assert (await ingest.delete("/v1/models/m/aliases/staging")).status_code == 204
    assert (await ingest.delete("/v1/models/m/aliases/staging")).status_code == 404
    assert (await ingest.put("/v1/models/m/aliases/staging", json={"version": 9})).status_code == 404
    assert (await ingest.get("/v1/models/nope")).status_code == 404
    assert (await ingest.get("/v1/models/m", params={"tenant": "../x"})).status_code == 422  # the document's pattern
    for version in ("0", "²", "٣", "x"):  # versions are ASCII numbers from 1
        r = await ingest.get(f"/v1/models/m/versions/{version}")
        assert r.status_code == 422 and "version" in r.json()["error"], (version, r.text)


async def test_an_upload_over_the_route_limit_is_refused_before_it_is_read(ingest: httpx.AsyncClient) -> None:
    declared = str(10 << 30)  # 10 GiB announced; nothing like it is sent or spooled
    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": declared}
    r = await ingest.post("/v1/datasets", content=b"--b--\r\n", headers=headers)
    assert r.status_code == 413 and "Too Large" in r.text
    r = await ingest.get("/v1/no-such-route")
    assert r.status_code == 404 and r.json() == {"error": "Not Found"}


async def test_quotas_are_429s_naming_the_limit(registry: Registry, tmp_path: Path) -> None:
    with NatsServer(tmp_path / "nats") as server:  # its own server: no trainer drains this queue
        bus = await Bus.connect(server.url)
        await bus.provision()
        limits = {"max_queued_jobs": 2, "max_upload_bytes_per_day": 3 * len(_npz()) // 2, "max_models_per_tenant": 3}
        settings = IngestSettings(home=tmp_path, nats_url=server.url, **limits)
        app = create_app(lambda: settings)
        app.dependency_overrides[get_datasets] = lambda: DatasetStore(registry.store)
        app.dependency_overrides[get_bus] = lambda: bus
        app.dependency_overrides[get_registry] = lambda: registry
        app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
        headers = bearer(api_key(registry, "upload", "train", tenant="quota"))
        try:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://ingest", headers=headers
            ) as client:
                assert (await client.post("/v1/datasets", files={"file": ("d.npz", _npz())})).status_code == 201
                r = await client.post("/v1/datasets", files={"file": ("e.npz", _npz(n=21))})
                assert r.status_code == 429 and "FERMION_MAX_UPLOAD_BYTES_PER_DAY" in r.json()["error"]
                for name in ("a", "b"):
                    registry.register("quota", name, {"model.onnx": linear_onnx()}, linear_draft())
                job = {"model_name": "a", "dataset": {"name": "d"}}
                assert (await client.post("/v1/trainings", json=job)).status_code == 202
                r = await client.post("/v1/trainings", json={**job, "model_name": "c"})  # a third model: allowed
                assert r.status_code == 202
                r = await client.post("/v1/trainings", json=job)
                assert r.status_code == 429 and "2 jobs queued" in r.json()["error"]
                assert "FERMION_MAX_QUEUED_JOBS" in r.json()["error"]
                registry.register("quota", "c", {"model.onnx": linear_onnx()}, linear_draft())
                r = await client.post("/v1/trainings", json={**job, "model_name": "d"})
                assert r.status_code == 429 and "FERMION_MAX_MODELS_PER_TENANT" in r.json()["error"]
        finally:
            await bus.close()


async def test_labels_are_published_for_the_monitor_and_bad_ones_refused(ingest: httpx.AsyncClient, bus: Bus) -> None:
    from fermion.events import LabelsSubmitted

    since = datetime.now(UTC)
    body = {"labels": [{"request_id": "r1", "label": "cat"}, {"request_id": "r2", "label": "dog"}]}
    r = await ingest.post("/v1/models/pets/labels", json=body)
    assert r.status_code == 202 and r.json()["labels"] == 2, r.text
    event = parse_event(await _next_event(bus, "fermion.models.labels", since), LabelsSubmitted)
    assert isinstance(event, LabelsSubmitted) and event.id == r.json()["event_id"]
    assert [(e.request_id, e.label) for e in event.data.labels] == [("r1", "cat"), ("r2", "dog")]
    for bad in ({"labels": []}, {"labels": [{"request_id": "", "label": "x"}]}, {"labels": [{"label": "x"}]}):
        r = await ingest.post("/v1/models/pets/labels", json=bad)
        assert r.status_code in (400, 422) and "error" in r.json(), r.text
    r = await ingest.post("/v1/models/Bad..Name/labels", json=body)
    assert 400 <= r.status_code < 500, r.text


async def _poll_while_publishing(
    ingest: httpx.AsyncClient, bus: Bus, key: str, job_id: str, publisher_tenant: str
) -> tuple[float, dict]:
    """Long-poll `job_id`'s events with `key` while a training.progress of `publisher_tenant` names it."""
    from fermion.events import ProgressReport, TrainingProgress

    async def publish_soon() -> None:
        await asyncio.sleep(0.3)
        report = ProgressReport(job_id=job_id, model_name="m", epoch=1, epochs=2, loss=0.5)
        await bus.publish(TrainingProgress(id=f"{job_id}.{publisher_tenant}.1", tenant=publisher_tenant, data=report))

    started = asyncio.get_running_loop().time()
    publishing = asyncio.create_task(publish_soon())
    r = await ingest.get(f"/v1/jobs/{job_id}/events", params={"wait_s": 3}, headers=bearer(key))
    await publishing
    assert r.status_code == 200, r.text
    return asyncio.get_running_loop().time() - started, r.json()


async def test_the_job_long_poll_hears_only_its_own_tenant(
    ingest: httpx.AsyncClient, bus: Bus, registry: Registry
) -> None:
    # Issue 25: the long-poll woke on any tenant's event carrying the id, an oracle of others' job activity.
    alice, bob = api_key(registry, "read", tenant="alice"), api_key(registry, "read", tenant="bob")
    stamp = datetime.now(UTC).strftime("%H%M%S%f")
    took, answer = await _poll_while_publishing(ingest, bus, alice, f"bobs-job-{stamp}", "bob")
    assert took >= 2.9, f"alice's poll woke after {took:.2f}s on bob's event"
    assert answer["events"] == [] and answer["job"] is None
    took, answer = await _poll_while_publishing(ingest, bus, bob, f"bobs-own-{stamp}", "bob")  # the control
    assert took < 2.5 and len(answer["events"]) == 1, (took, answer)


async def test_answers_name_datasets_by_store_key_never_by_local_path(
    ingest: httpx.AsyncClient, registry: Registry, tmp_path: Path
) -> None:
    # Issue 25: upload answers showed the local store's path (file:///.../store/datasets/...).
    r = await ingest.post("/v1/datasets", files={"file": ("Paths.npz", _npz(n=23))}, data={"name": "paths"})
    assert r.status_code == 201, r.text
    key = f"datasets/default/paths/{r.json()['sha256']}.npz"
    assert r.json()["uri"] == key
    job = await ingest.post("/v1/trainings", json={"model_name": "paths", "dataset": {"name": "paths"}})
    assert job.status_code == 202 and job.json()["dataset"]["uri"] == key, job.text
    events = await ingest.get(f"/v1/jobs/{job.json()['job_id']}/events", params={"wait_s": 0})
    assert events.status_code == 200, events.text
    for answer in (r, job, events):
        assert str(tmp_path) not in answer.text and "file:" not in answer.text, answer.text
