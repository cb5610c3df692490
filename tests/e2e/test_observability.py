"""Operating the real stack: after an upload, a training, a failed training and inferences, every
function's `/metrics` moved as it should and the logs are JSON lines with route templates and job ids."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from fermion.client import Client, JobFailed
from fermion.infra import Stack, StackSettings
from tests.conftest import free_port, wait_until

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    home = tmp_path_factory.mktemp("fermion-home")
    ports = {"nats_port": free_port(), "ingest_port": free_port(), "inference_port": free_port()}
    with Stack(StackSettings(home=home, trainer_metrics_port=free_port(), **ports)) as s:
        yield s


def _scrape(url: str, key: str | None) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    r = httpx.get(url, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def _total(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and want <= have)


def _blobs(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 240)
    x = (rng.normal(size=(240, 6)) + y[:, None] * 2.5).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    (tmp_path / "blobs.npz").write_bytes(buf.getvalue())
    return tmp_path / "blobs.npz"


def test_metrics_and_logs_move_with_the_work(stack: Stack, tmp_path: Path) -> None:
    s, key = stack.settings, stack.identity.admin_key()
    with Client.from_settings(s) as client:
        client.upload(_blobs(tmp_path), name="blobs")
        client.wait(client.train("blobs", "blobs", architecture="mlp", epochs=3), timeout_s=120)
        with pytest.raises(JobFailed):
            client.wait(client.train("blobs", "blobs", architecture="resnet9000", epochs=1), timeout_s=60)
        for _ in range(3):
            assert client.predict("blobs", np.ones((2, 6), np.float32)).shape == (2, 3)

    assert httpx.get(f"{s.inference_url}/metrics", timeout=10).status_code == 401  # a key, as documented
    inference = _scrape(f"{s.inference_url}/metrics", key)
    assert _total(inference, "fermion_inference_requests_total", model="blobs", status="200") >= 3
    assert _total(inference, "fermion_inference_request_duration_seconds_count", model="blobs") >= 3
    assert _total(inference, "fermion_inference_rows_total", model="blobs") >= 6
    assert _total(inference, "fermion_inference_models_loaded") >= 1
    assert _total(inference, "fermion_inference_model_provider_info", model="blobs") >= 1

    ingest = _scrape(f"{s.ingest_url}/metrics", key)
    assert _total(ingest, "fermion_http_requests_total", route="/v1/datasets", status="201") == 1
    assert _total(ingest, "fermion_http_requests_total", route="/v1/trainings", status="202") == 2
    assert _total(ingest, "fermion_ingest_uploads_total", format="npz") == 1
    assert _total(ingest, "fermion_ingest_upload_bytes_total") > 0
    published = "fermion_ingest_publish_duration_seconds_count"
    assert _total(ingest, published, subject="fermion.training.requested", outcome="ok") == 2

    trainer_url = f"http://127.0.0.1:{s.trainer_metrics_port}/metrics"

    def trainer_done() -> bool:  # counted just after the ack, which follows the events the client saw
        t = _scrape(trainer_url, None)
        return (
            _total(t, "fermion_trainer_jobs_completed_total") >= 1
            and _total(t, "fermion_trainer_jobs_dead_lettered_total", cause="failed") >= 1
        )

    wait_until(trainer_done, 30, "trainer metrics")
    trainer = _scrape(trainer_url, None)
    assert _total(trainer, "fermion_trainer_jobs_started_total") >= 2
    assert _total(trainer, "fermion_trainer_jobs_failed_total", outcome="final") >= 1
    assert _total(trainer, "fermion_trainer_epoch_duration_seconds_count") >= 3
    assert _total(trainer, "fermion_trainer_job_duration_seconds_count") >= 1
    assert _total(trainer, "fermion_trainer_jobs_in_flight") == 0
    wait_until(lambda: ("fermion_trainer_bus_up", frozenset()) in _scrape(trainer_url, None), 15, "consumer gauges")

    access = [json.loads(line) for line in (stack.logs / "inference.log").read_text().splitlines() if '"route"' in line]
    assert any(a["route"] == "/v2/models/{name}/infer" and a["status"] == 200 and a["request_id"] for a in access)
    ingest_lines = [
        json.loads(line) for line in (stack.logs / "ingest.log").read_text().splitlines() if line[:1] == "{"
    ]
    assert any(a.get("route") == "/v1/datasets" and a.get("tenant") == "default" for a in ingest_lines)
    trainer_lines = [
        json.loads(line) for line in (stack.logs / "trainer-0.log").read_text().splitlines() if line[:1] == "{"
    ]
    assert any("job_id" in t and t["function"] == "trainer" for t in trainer_lines)
    assert not any(t["logger"] == "root" for t in trainer_lines)  # library chatter is thirdparty.*, WARNING+


def test_run_history_lasts_in_the_store_and_reads_over_http_and_the_cli(stack: Stack, tmp_path: Path) -> None:
    s, key = stack.settings, stack.identity.admin_key()
    with Client.from_settings(s) as client:
        client.upload(_blobs(tmp_path), name="blobs")
        first = client.train("blobs", "blobs", architecture="mlp", epochs=2, learning_rate=1e-2)
        second = client.train("blobs", "blobs", architecture="mlp", epochs=3, learning_rate=3e-3)
        client.wait(first, timeout_s=120)
        client.wait(second, timeout_s=120)
    headers = {"Authorization": f"Bearer {key}"}

    def recorded() -> bool:  # written just after the ack, which follows the completed event
        r = httpx.get(f"{s.ingest_url}/v1/runs/{second}", headers=headers, timeout=10)
        return r.status_code == 200 and r.json()["status"] == "completed"

    wait_until(recorded, 30, "the run record")
    run = httpx.get(f"{s.ingest_url}/v1/runs/{second}", headers=headers, timeout=10).json()
    assert [e["epoch"] for e in run["epochs"]] == [1, 2, 3]
    assert all(e["loss"] > 0 and "accuracy" in e["metrics"] for e in run["epochs"])
    assert run["parameters"]["learning_rate"] == 3e-3 and run["version"] >= 1
    assert run["lineage"]["training_event_id"] == second and run["metrics"]["accuracy"] > 0.5
    listed = httpx.get(f"{s.ingest_url}/v1/runs", params={"model": "blobs"}, headers=headers, timeout=10).json()
    assert {first, second} <= {r["job_id"] for r in listed}
    assert any(r["status"] == "failed" and "resnet9000" in (r["error"] or "") for r in listed)
    compared = httpx.get(
        f"{s.ingest_url}/v1/runs/compare", params={"job": [first, second]}, headers=headers, timeout=10
    ).json()
    assert {"epochs", "learning_rate"} <= set(compared["differing_parameters"])
    assert httpx.get(f"{s.ingest_url}/v1/runs/nope", headers=headers, timeout=10).status_code == 404
    assert httpx.get(f"{s.ingest_url}/v1/runs", timeout=10).status_code == 401

    env = {**os.environ, "FERMION_HOME": str(s.home), "COLUMNS": "250"}
    for args in (["list", "--model", "blobs"], ["show", second], ["compare", first, second]):
        done = subprocess.run(
            [sys.executable, "-m", "fermion", "runs", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert second in done.stdout
    assert "learning_rate" in done.stdout  # compare names the parameter that differs
