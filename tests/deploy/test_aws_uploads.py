"""Datasets past Lambda's 6 MB request limit: ingest signs an S3 PUT under `incoming/`, the client PUTs
the file to a real S3 API (LocalStack), the bucket's notification reaches the drop handler (through
SQS, as `fermion up --s3` wires it), and the dataset is stored and announced."""

from __future__ import annotations

import asyncio
import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import boto3
import httpx
import numpy as np
import pytest
import uvicorn

from fermion.client import Client, FermionError
from fermion.events import Bus, DatasetUploaded, parse_event, subjects
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import get_datasets, get_keys, get_registry
from fermion.functions.ingest.s3_events import ingest_records, s3_records
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.infra.localstack import LocalStack
from fermion.infra.provision import s3_drop_queue
from fermion.model_store import DatasetStore, KeyStore, LocalDirStore, ObjectStore, Registry
from fermion.model_store.backends.s3 import S3Store
from fermion.presigned import DIRECT_LIMIT
from tests.helpers import api_key, free_port

pytestmark = [pytest.mark.deploy, pytest.mark.integration]


def _serve(store: ObjectStore, nats_url: str, home: Path) -> Iterator[tuple[str, str]]:
    """The ingest app over `store`, served on 127.0.0.1 (the client is synchronous); its URL and an admin key."""
    registry = Registry(store, home / "cache")
    settings = IngestSettings(home=home, nats_url=nats_url, max_upload_bytes=64 << 20)
    app = create_app(lambda: settings)
    app.dependency_overrides[get_datasets] = lambda: DatasetStore(store)
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(store)
    port = free_port()
    # With its lifespan, as deployed: the app closes the NATS connection its routes made when it stops.
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not server.started:
        time.sleep(0.05)
    try:
        yield url, api_key(registry, "admin")
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture
def s3_ingest(
    localstack: LocalStack, nats_server: NatsServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, str, S3Store, str]]:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, "test")  # LocalStack takes any credentials
    bucket = f"fermion-{uuid.uuid4().hex[:12]}"
    queue = s3_drop_queue(bucket, endpoint_url=localstack.endpoint_url, queue_name=f"drops-{bucket}")
    store = S3Store(bucket, endpoint_url=localstack.endpoint_url, region="us-east-1")  # its own client: SigV4
    try:
        for url, key in _serve(store, nats_server.url, tmp_path):
            yield url, key, store, queue
    finally:
        store.close()


def _npz(rows: int) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(rows)
    np.savez(buf, x=rng.normal(size=(rows, 64)).astype(np.float32), y=np.arange(rows) % 3)
    return buf.getvalue()


async def _drain_drops(queue_url: str, endpoint: str, store: S3Store, bus: Bus) -> list[str]:
    sqs = boto3.client(
        "sqs", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )
    with closing(sqs):
        for _ in range(40):
            reply = await asyncio.to_thread(sqs.receive_message, QueueUrl=queue_url, WaitTimeSeconds=1)
            for message in reply.get("Messages", []):
                await asyncio.to_thread(sqs.delete_message, QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
                if records := s3_records(json.loads(message["Body"])):  # not S3's test event
                    return await ingest_records(records, DatasetStore(store), bus)
    raise AssertionError("no S3 notification reached the queue")


@pytest.mark.timeout(120)
async def test_a_dataset_past_lambdas_limit_goes_through_a_presigned_put(
    s3_ingest: tuple[str, str, S3Store, str], localstack: LocalStack, bus: Bus, tmp_path: Path
) -> None:
    url, key, store, queue = s3_ingest
    data = _npz(rows=18000)
    assert len(data) > DIRECT_LIMIT  # ~4.6 MB: past what one Lambda request carries once encoded
    path = tmp_path / "Big.npz"
    path.write_bytes(data)
    since = datetime.now(UTC)
    with Client(url, url, api_key=key) as client:
        ref = await asyncio.to_thread(client.upload, path)  # automatic: over the limit
    assert (ref["name"], ref["size"], ref["key"]) == ("big", len(data), "incoming/default/big.npz")
    assert store.get("incoming/default/big.npz")[0] == data  # a real HTTP PUT reached S3
    [outcome] = await _drain_drops(queue, localstack.endpoint_url, store, bus)
    assert outcome.startswith("stored incoming/default/big.npz"), outcome
    stored = DatasetStore(store).find("default", "big", None)
    assert stored.sha256 == ref["sha256"]
    events = bus.watch(subjects.DATASETS_UPLOADED, since=since)
    try:
        event = parse_event(await asyncio.wait_for(anext(events), 5), DatasetUploaded)
    finally:
        await events.aclose()
    assert (event.data.name, event.data.sha256) == ("big", ref["sha256"])


def test_the_url_is_signed_for_the_declared_size_and_charged(s3_ingest: tuple[str, str, S3Store, str]) -> None:
    url, key, store, _ = s3_ingest
    headers = {"Authorization": f"Bearer {key}"}
    bad = httpx.post(f"{url}/v1/datasets/To..y/upload-url", json={"format": "csv", "size": 10}, headers=headers)
    assert bad.status_code == 422, bad.text  # the naming rule, at the door
    r = httpx.post(f"{url}/v1/datasets/toy/upload-url", json={"format": "csv", "size": 10}, headers=headers)
    assert r.status_code == 201, r.text
    signed = r.json()
    assert signed["key"] == "incoming/default/toy.csv"
    assert signed["headers"]["Content-Length"] == "10"
    assert "X-Amz-Signature=" in signed["url"] and "content-length" in signed["url"].lower()
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert json.loads(store.get(f"usage/default/{today}.json")[0])["upload_bytes"] >= 10
    too_big = httpx.post(f"{url}/v1/datasets/toy/upload-url", json={"format": "csv", "size": 65 << 20}, headers=headers)
    assert too_big.status_code == 413, too_big.text


def test_a_local_directory_store_answers_409_and_the_client_uploads_directly(
    nats_server: NatsServer, tmp_path: Path
) -> None:
    for url, key in _serve(LocalDirStore(tmp_path / "store"), nats_server.url, tmp_path):
        r = httpx.post(
            f"{url}/v1/datasets/toy/upload-url",
            json={"format": "npz", "size": 10},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 409, r.text
        assert "presigned uploads need the S3 store" in r.text
        path = tmp_path / "big.npz"
        path.write_bytes(_npz(rows=18000))
        with Client(url, url, api_key=key) as client:
            with pytest.raises(FermionError, match="409"):
                client.upload(path, presigned=True)  # asked for explicitly: the refusal stands
            ref = client.upload(path)  # automatic: falls back to a direct upload
        assert (ref["name"], ref["size"]) == ("big", path.stat().st_size)
