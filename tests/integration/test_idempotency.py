"""A client retrying on the same Idempotency-Key across a frozen nats-server: one event, one version.

nats-server is frozen (SIGSTOP) while the ingest function publishes, so the publish goes out but is
never confirmed: ingest answers 504 "may have been accepted". The client retries with the same key
until NATS is resumed (SIGCONT), when the frozen publish and the retries all arrive. Every copy has
the same event id, so JetStream keeps one, and the trainers' claim would make even two one version.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fermion.client import Client
from fermion.events import Bus, ConsumerPolicy, DatasetUploaded, TrainingCompleted, parse_event, subjects
from fermion.infra import NatsServer
from fermion.model_store import StoreSettings, generate_key_pair, open_registry
from fermion.retry import Retry
from tests.helpers import Frozen, Trainer, api_key, bearer, free_port, wait_until

pytestmark = pytest.mark.integration
INGEST_APP = "fermion.functions.ingest.app:app"


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[NatsServer, dict[str, str], str]]:
    with NatsServer(tmp_path / "nats") as server:
        generate_key_pair(tmp_path / "home" / "keys")  # the trainer signs the version it registers
        env = {
            **os.environ,
            "FERMION_HOME": str(tmp_path / "home"),
            "FERMION_NATS_URL": server.url,
            "FERMION_PUBLISH_TIMEOUT_S": "1.5",
            "FERMION_ACK_WAIT_S": "10",
            "PYTHONUNBUFFERED": "1",
        }

        async def provision() -> None:
            bus = await Bus.connect(server.url)
            await bus.provision(ConsumerPolicy(ack_wait_s=10, max_deliver=3))
            await bus.close()

        asyncio.run(provision())
        port = free_port()
        with open(tmp_path / "ingest.log", "wb") as log:
            ingest = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "--host", "127.0.0.1", "--port", str(port), INGEST_APP],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        trainer = Trainer(env, tmp_path / "trainer.log").start()
        try:
            wait_until(lambda: _answers(url), 60, "ingest to answer /healthz")
            env["FERMION_API_KEY"] = api_key(
                open_registry(StoreSettings(home=tmp_path / "home")), "upload", "train", "read"
            )
            yield server, env, url
        finally:
            trainer.stop()
            ingest.terminate()
            ingest.wait(15)


def _answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _npz() -> bytes:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 120)
    x = (rng.normal(size=(120, 4)) + y[:, None] * 3).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def _across_a_freeze(server: NatsServer, call: Callable[[threading.Event, list[str]], Any]) -> tuple[Any, list[str]]:
    """Run `call` with NATS frozen until the client has been told to retry once, then resume NATS."""
    retried = threading.Event()
    reasons: list[str] = []
    with ThreadPoolExecutor(1) as pool, Frozen(server):
        future: Future[Any] = pool.submit(call, retried, reasons)
        assert retried.wait(60), "the client was never told to retry"
    return future.result(timeout=60), reasons


def _client(url: str, nats_url: str, key: str, retried: threading.Event, reasons: list[str]) -> Client:
    def heard(attempt: int, why: str) -> None:
        reasons.append(why)
        retried.set()

    retry = Retry(attempts=20, first_delay_s=0.2, max_delay_s=1.0, on_retry=heard)
    return Client(url, url, api_key=key, retry=retry)


def test_a_frozen_nats_around_an_upload_and_a_training_gives_one_event_and_one_version(
    stack: tuple[NatsServer, dict[str, str], str], tmp_path: Path
) -> None:
    server, env, url = stack
    key = env["FERMION_API_KEY"]
    path = tmp_path / "toy.npz"
    path.write_bytes(_npz())
    # Connect ingest to NATS first, so the freeze catches a publish in flight, not a connect.
    first = httpx.post(
        f"{url}/v1/trainings", json={"model_name": "m", "dataset": {"name": "none"}}, headers=bearer(key)
    )
    assert first.status_code == 404

    def upload(retried: threading.Event, reasons: list[str]) -> dict[str, Any]:
        with _client(url, server.url, key, retried, reasons) as client:
            return client.upload(path, name="toy")

    ds, upload_reasons = _across_a_freeze(server, upload)

    def train(retried: threading.Event, reasons: list[str]) -> str:
        with _client(url, server.url, key, retried, reasons) as client:
            return client.train("toy", "toy", sha256=ds["sha256"], epochs=2)

    job_id, train_reasons = _across_a_freeze(server, train)
    assert upload_reasons and upload_reasons[0].startswith("504"), upload_reasons
    assert "may have been accepted" in upload_reasons[0] and "retry with the same Idempotency-Key" in upload_reasons[0]
    # A training request first counts the tenant's queued jobs (its quota): with NATS frozen that read
    # fails before anything is published (503, nothing accepted), or the publish is unconfirmed (504).
    assert train_reasons and train_reasons[0][:3] in ("503", "504"), train_reasons

    with Client(url, url, api_key=key) as client:
        done = client.wait(job_id, timeout_s=120)

    async def history() -> tuple[list[Any], list[Any]]:
        bus = await Bus.connect(server.url)
        try:
            uploaded = [parse_event(m.data) for m in await bus.history(subjects.DATASETS_UPLOADED)]
            completed = [parse_event(m.data) for m in await bus.history(subjects.TRAINING_COMPLETED)]
        finally:
            await bus.close()
        return uploaded, completed

    uploaded, completed = asyncio.run(history())
    assert [e.data.sha256 for e in uploaded if isinstance(e, DatasetUploaded)] == [ds["sha256"]]
    ours = [e for e in completed if isinstance(e, TrainingCompleted) and e.data.job_id == job_id]
    assert len(ours) == 1, f"the training request was stored {len(ours)} times"
    registry = open_registry(StoreSettings(home=Path(env["FERMION_HOME"])))
    assert registry.versions("default", "toy") == [done.data.version] == [1]
    print(
        f"\nfrozen NATS: upload retried {len(upload_reasons)}x, training retried {len(train_reasons)}x "
        f"(first answer {upload_reasons[0][:3]}); 1 uploaded event, 1 job, versions {done.data.version}"
    )
