"""The inference function's metrics are built after its first answer, and count it as it happened."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from fermion.functions.inference.app import create_app
from fermion.functions.inference.counting import AfterFirstAnswer, EmfCounts
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Registry, StoreSettings, generate_key_pair, open_registry
from fermion.service.observability.inference import InferenceMetrics
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

FIRST_REQUEST = """
import asyncio, json, sys
from fermion.functions.inference.app import create_app

app, seen = create_app(), {}

async def main():
    messages = [{"type": "http.request", "body": sys.argv[1].encode(), "more_body": False}]

    async def receive():
        return messages.pop()

    async def send(message):
        if message["type"] == "http.response.start":
            seen["status"] = message["status"]
        else:
            seen["prometheus-client imported when the answer went out"] = "prometheus_client" in sys.modules
            seen["body"] = message["body"].decode()

    headers = [(b"authorization", sys.argv[2].encode()), (b"content-type", b"application/json")]
    await app({"type": "http", "method": "POST", "path": "/v2/models/lin/infer", "headers": headers}, receive, send)
    seen["prometheus-client imported after"] = "prometheus_client" in sys.modules
    from prometheus_client import generate_latest

    seen["scrape"] = generate_latest(app.state.services.metrics.registry).decode()

asyncio.run(main())
print(json.dumps(seen))
"""


def _body(rows: int = 2) -> dict[str, object]:
    x = np.ones((rows, 4), np.float32)
    return {"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_the_first_answer_goes_out_before_prometheus_client_is_imported(tmp_path: Path) -> None:
    """A fresh process, as a cold start: answered first, then the metrics, which count that answer."""
    generate_key_pair(tmp_path / "keys")  # signed, as a deployed function serves only signed versions
    registry = open_registry(StoreSettings(home=tmp_path))
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    key = bearer(api_key(registry, "infer"))["Authorization"]
    env = {"PATH": os.environ["PATH"], "FERMION_HOME": str(tmp_path), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
    out = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST, json.dumps(_body()), key], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout)
    assert seen["status"] == 200, seen["body"]
    assert seen["prometheus-client imported when the answer went out"] is False
    assert seen["prometheus-client imported after"] is True
    samples = _samples(seen["scrape"])
    answered = (("alias", "production"), ("model", "lin"), ("status", "200"), ("version", "1"))
    assert samples[("fermion_inference_requests_total", answered)] == 1
    latency = (("model", "lin"), ("version", "1"))
    assert samples[("fermion_inference_request_duration_seconds_count", latency)] == 1
    assert samples[("fermion_inference_rows_total", (("model", "lin"),))] == 2
    assert samples[("fermion_inference_model_load_duration_seconds_count", (("model", "lin"),))] == 1
    assert 0 < samples[("fermion_inference_cold_start_seconds", ())] < 60


def test_held_counts_are_replayed_with_the_time_they_measured() -> None:
    counts = AfterFirstAnswer(lambda: InferenceMetrics(CollectorRegistry()))
    counts.answered("m", 1, "production", time.perf_counter() - 0.002)  # a request that took 2 ms
    counts.ran("m", 3, 0.001, (0.0,))
    counts.refused_request("BadRequest", 400, "m", 1)
    time.sleep(0.05)  # the metrics are built later: the latency must not grow with the wait
    metrics = counts.build()
    assert metrics is not None
    samples = _samples_of(metrics.registry)
    latency = (("model", "m"), ("version", "1"))
    assert samples[("fermion_inference_request_duration_seconds_count", latency)] == 1
    assert 0.002 <= samples[("fermion_inference_request_duration_seconds_sum", latency)] < 0.02
    assert samples[("fermion_inference_rows_total", (("model", "m"),))] == 3
    assert samples[("fermion_inference_refused_requests_total", (("reason", "BadRequest"), ("status", "400")))] == 1
    assert counts.answered == metrics.answered  # built: later counts go straight to the metrics
    counts.answered("m", 1, "production", time.perf_counter())
    assert _samples_of(metrics.registry)[("fermion_inference_request_duration_seconds_count", latency)] == 2
    assert counts.build() is metrics


def _samples_of(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    from prometheus_client import generate_latest

    return _samples(generate_latest(registry).decode())


def test_a_scrape_before_any_answer_builds_the_metrics(registry: Registry, tmp_path: Path) -> None:
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    client = TestClient(create_app(lambda: runtime, lambda: settings))
    r = client.get("/metrics", headers=bearer(api_key(registry, "read")))
    assert r.status_code == 200
    assert "# TYPE fermion_inference_requests_total counter" in r.text  # built, with nothing counted yet


def test_under_lambda_nothing_is_kept_for_a_scrape(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fermion-inference")
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    app = create_app(lambda: runtime, lambda: settings, batching=False)
    client = TestClient(app)
    assert (
        client.post("/v2/models/lin/infer", json=_body(), headers=bearer(api_key(registry, "infer"))).status_code == 200
    )
    assert isinstance(app.state.services.metrics, EmfCounts)
    assert client.get("/metrics", headers=bearer(api_key(registry, "read"))).status_code == 404


def test_metrics_that_cannot_be_built_stop_counting_and_the_answers_go_on(caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> InferenceMetrics:
        raise RuntimeError("no registry today")

    counts = AfterFirstAnswer(broken)
    counts.answered("m", 1, "production", time.perf_counter())
    assert counts.build() is None
    assert "could not be built" in caplog.text
    caplog.clear()
    counts.answered("m", 1, "production", time.perf_counter())  # dropped, not held without bound
    counts.ran("m", 1, 0.001, (0.0,))
    assert counts._held == [] and counts.registry is None and counts.build() is None
    assert "could not be built" not in caplog.text  # said once


def test_counts_from_worker_threads_during_the_build_are_each_counted_once() -> None:
    """Batched runs count from worker threads: none is lost or doubled while the metrics are built."""
    import threading

    started = threading.Event()

    def slow() -> InferenceMetrics:
        started.set()
        time.sleep(0.05)  # threads keep counting while this runs
        return InferenceMetrics(CollectorRegistry())

    counts = AfterFirstAnswer(slow)
    per_thread, threads = 500, 4

    def count() -> None:
        for _ in range(per_thread):
            counts.ran("m", 1, 0.0001, (0.0,))

    workers = [threading.Thread(target=count) for _ in range(threads)]
    builder = threading.Thread(target=counts.build)
    builder.start()
    started.wait(5)
    for w in workers:
        w.start()
    for w in [builder, *workers]:
        w.join(10)
    metrics = counts.build()
    assert metrics is not None
    assert _samples_of(metrics.registry)[("fermion_inference_rows_total", (("model", "m"),))] == per_thread * threads
