"""Operating the real stack: after an upload, a training, a failed training and inferences, every
function's `/metrics` moved as it should and the logs are JSON lines with route templates and job ids."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families

from fermion.client import Client, FermionError, JobFailed
from fermion.events import streams
from fermion.infra import Stack
from tests.helpers import StackOptions, wait_until

pytestmark = pytest.mark.e2e


class Collector(ThreadingHTTPServer):
    """An in-process OTLP/HTTP trace collector: every span received, with its service's name."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _OtlpHandler)
        self.spans: list[tuple[str, str, str]] = []  # (trace id, service, span name)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class _OtlpHandler(BaseHTTPRequestHandler):
    server: Collector

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["content-length"])))
        for resource_spans in request.resource_spans:
            attrs = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    self.server.spans.append((span.trace_id.hex(), attrs.get("service.name", ""), span.name))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.end_headers()
        self.wfile.write(b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    server = Collector()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def stack_options(collector: Collector) -> StackOptions:
    """The functions trace to the collector (and export quickly); the trainer's /metrics on a free port."""
    collect = f"http://127.0.0.1:{collector.server_port}"
    return StackOptions(
        env={"OTEL_EXPORTER_OTLP_ENDPOINT": collect, "OTEL_BSP_SCHEDULE_DELAY": "100"}, trainer_metrics=True
    )


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
        (tmp_path / "x.json").write_text("{}")
        with pytest.raises(FermionError, match="unsupported file"):
            client.upload(tmp_path / "x.json")

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
    assert _total(ingest, "fermion_ingest_refused_requests_total", reason="BadUpload", status="400") == 1
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
    # The monitor reads the trainers' backlog itself, as the monitor role (its grants), every 5 s.
    monitor_url = f"http://127.0.0.1:{s.monitor_metrics_port}/metrics"
    backlog = "fermion_monitor_trainer_backlog_messages"

    def all_done() -> bool:  # every consumer the trainers serve is read, and every job is done
        samples = _scrape(monitor_url, None)
        consumers = {dict(labels)["consumer"] for name, labels in samples if name == backlog}
        read = _total(samples, "fermion_monitor_trainer_backlog_up") == 1
        return read and consumers == {d for _, d in streams.TRAINER_CONSUMERS} and _total(samples, backlog) == 0

    wait_until(all_done, 15, "the monitor's backlog gauges")

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

    env = {  # the CLI reads runs over HTTP: it is told where this stack's ingest answers
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "250",
    }
    for args in (["list", "--model", "blobs"], ["show", second], ["compare", first, second]):
        done = subprocess.run(
            [sys.executable, "-m", "fermion", "runs", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert second in done.stdout
    assert "learning_rate" in done.stdout  # compare names the parameter that differs


def test_one_trace_spans_upload_pipeline_training_registration_and_promotion(
    stack: Stack, collector: Collector, tmp_path: Path
) -> None:
    s, key = stack.settings, stack.identity.admin_key()
    rule = {
        "dataset_prefix": "traced",
        "model_name": "traced",
        "recipe": {"architecture": "mlp", "epochs": 2},
        "gate": {"alias": "staging", "metric": "accuracy", "minimum": 0.0},
    }
    with Client.from_settings(s) as client:
        client.put_pipeline("traced", rule)  # as `fermion pipelines add` does: over HTTP, not into the store
    trace_id = os.urandom(16).hex()
    headers = {"Authorization": f"Bearer {key}", "traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"}
    with open(_blobs(tmp_path), "rb") as f:
        r = httpx.post(f"{s.ingest_url}/v1/datasets", headers=headers, files={"file": ("traced.npz", f)}, timeout=30)
    assert r.status_code == 201, r.text

    def names() -> set[tuple[str, str]]:
        return {(service, name) for t, service, name in list(collector.spans) if t == trace_id}

    expected = {
        ("fermion-ingest", "POST /v1/datasets"),
        ("fermion-trainer", "pipelines fermion.datasets.uploaded"),
        ("fermion-trainer", "trainers fermion.training.requested"),  # ends last: after the ack
        ("fermion-trainer", "train, compile and register"),
        ("fermion-trainer", "registration"),
        ("fermion-trainer", "promotion"),
    }
    wait_until(lambda: expected <= names(), 120, "the whole trace at the collector")
    trainer_lines = (stack.logs / "trainer-0.log").read_text()
    assert f'"trace_id": "{trace_id}"' in trainer_lines  # the logs carry the trace id


CHROMIUM = shutil.which("chromium")
ARTEFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (./scripts/setup installs it)")
def test_console_shows_models_curves_and_comparisons_and_promotes(stack: Stack, tmp_path: Path) -> None:
    from axe_playwright_python.sync_playwright import Axe
    from playwright.sync_api import expect, sync_playwright

    s, key = stack.settings, stack.identity.admin_key()
    assert key is not None
    headers = {"Authorization": f"Bearer {key}"}
    with Client.from_settings(s) as client:  # two more runs of their own, so the test stands alone
        client.upload(_blobs(tmp_path), name="console")
        jobs = [client.train("console", "console", architecture="mlp", epochs=n) for n in (2, 4)]
        for job in jobs:
            client.wait(job, timeout_s=120)
    wait_until(
        lambda: all(
            httpx.get(f"{s.ingest_url}/v1/runs/{j}", headers=headers, timeout=10).json().get("status") == "completed"
            for j in jobs
        ),
        30,
        "the run records",
    )
    ARTEFACTS.mkdir(exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.goto(f"{s.ingest_url}/console")
        page.get_by_label("API key").fill(key)
        page.get_by_role("button", name="Use this key").click()
        page.get_by_role("link", name="console", exact=True).click()
        expect(page.locator("#versions tbody tr")).to_have_count(2)
        page.get_by_label("compare version 1").check()
        page.get_by_label("compare version 2").check()
        page.get_by_role("button", name="Compare selected versions").click()
        expect(page.locator("#version-comparison thead th")).to_have_count(3)  # metric, v1, v2
        page.screenshot(path=ARTEFACTS / "console-model.png", full_page=True)
        page.locator("[data-promote='2']").click()
        expect(page.locator("[data-promote='2']")).to_have_text("Confirm: v2 to production?")  # asks first
        page.locator("[data-promote='2']").click()
        expect(page.locator("#status")).to_have_text("production → version 2")
        aliases = httpx.get(f"{s.ingest_url}/v1/models/console", headers=headers, timeout=10).json()["aliases"]
        assert aliases["production"] == 2

        page.get_by_role("link", name="Runs").click()
        for job in jobs:
            page.get_by_label(f"plot run {job}").check()
        page.get_by_role("button", name="Plot selected runs").click()
        loss = page.locator("#charts figure.chart[data-metric='loss']")
        expect(loss.locator(".u-legend .u-series")).to_have_count(1 + 2 * 2)  # epoch; each run's training, validation
        points = loss.evaluate("f => f.uplot.data.slice(1).map(s => s.filter(v => v !== null).length)")
        assert points == [2, 2, 4, 4], points  # a point for every epoch of both runs
        page.screenshot(path=ARTEFACTS / "console-curves.png", full_page=True)
        audits = [Axe().run(page)]

        # The dead letter of the first test's resnet9000 job, with its reason; a retry runs it again.
        page.get_by_role("link", name="Dead letters").click()
        row = page.locator("#dlq tbody tr", has_text="resnet9000").first
        expect(row).to_contain_text("unknown architecture", timeout=20_000)  # the DLQ is read from the log
        job = row.locator("td").first.inner_text()
        row.get_by_role("button", name="Retry").click()
        expect(page.locator("#status")).to_have_text(f"Job {job} published again")
        page.screenshot(path=ARTEFACTS / "console-dlq.png", full_page=True)

        def retried() -> bool:  # the retry failed the same way: a second dead letter for the job
            letters = httpx.get(f"{s.ingest_url}/v1/dlq", headers=headers, timeout=10).json()
            return sum(d["job_id"] == job for d in letters) == 2

        wait_until(retried, 60, "the retried job's second dead letter")
        audits.append(Axe().run(page))
        serious = [v for v in Axe().run(page).response["violations"] if v["impact"] in ("serious", "critical")]
        assert serious == [], [(v["id"], v["help"]) for v in serious]
        browser.close()
