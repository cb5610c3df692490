"""Metrics, JSON logs and access logs of the inference function, over a real registry and ONNX Runtime."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Registry
from fermion.service.observability import logs
from tests.helpers import api_key, bearer, linear_draft, linear_onnx


def scrape(client: TestClient, headers: dict[str, str]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of `/metrics` by (name, sorted labels)."""
    r = client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


@pytest.fixture
def app_with(registry: Registry, tmp_path: Path) -> Iterator[object]:
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=2)}, linear_draft())

    def build(**overrides: object) -> TestClient:
        settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"], **overrides)
        runtime = ModelRuntime(registry, settings)
        return TestClient(create_app(lambda: runtime, lambda: settings))

    yield build


def _body(rows: int = 3) -> dict[str, object]:
    x = np.ones((rows, 4), np.float32)
    return {"inputs": [{"name": "input", "shape": [rows, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}


def test_infer_requests_latency_rows_and_refusals_are_counted(app_with, registry: Registry) -> None:
    client = app_with()
    infer, reader = bearer(api_key(registry, "infer")), bearer(api_key(registry, "read"))
    for _ in range(2):
        assert client.post("/v2/models/lin@latest/infer", json=_body(3), headers=infer).status_code == 200
    assert client.post("/v2/models/lin/infer", json=_body(1), headers=infer).status_code == 200
    assert client.post("/v2/models/lin@latest/infer", json={"inputs": []}, headers=infer).status_code == 400
    assert client.post("/v2/models/lin/infer", json=_body(), headers=reader).status_code == 403
    assert client.post("/v2/models/lin/infer", json=_body()).status_code == 401
    assert client.post("/v2/models/nope/infer", json=_body(), headers=infer).status_code == 404

    m = scrape(client, reader)
    requests = "fermion_inference_requests_total"
    assert m[(requests, (("alias", "latest"), ("model", "lin"), ("status", "200"), ("version", "2")))] == 2
    assert m[(requests, (("alias", "production"), ("model", "lin"), ("status", "200"), ("version", "1")))] == 1
    refused = "fermion_inference_refused_requests_total"
    assert m[(refused, (("reason", "BadRequest"), ("status", "400")))] == 1
    assert m[(refused, (("reason", "Forbidden"), ("status", "403")))] == 1
    assert m[(refused, (("reason", "Unauthorized"), ("status", "401")))] == 1
    assert sum(v for (n, labels), v in m.items() if n == refused and ("status", "404") in labels) == 1
    latency = "fermion_inference_request_duration_seconds_count"  # by version since issue 27 (canary vs incumbent)
    assert m[(latency, (("model", "lin"), ("version", "2")))] == 2
    assert m[(latency, (("model", "lin"), ("version", "1")))] == 1
    assert m[("fermion_inference_rows_total", (("model", "lin"),))] == 7
    assert m[("fermion_inference_compute_duration_seconds_count", (("model", "lin"),))] == 3
    assert m[("fermion_inference_batch_size_rows_sum", (("model", "lin"),))] == 7
    assert m[("fermion_inference_model_load_duration_seconds_count", (("model", "lin"),))] == 2  # v1 and v2
    assert m[("fermion_inference_models_loaded", ())] == 2
    assert m[("fermion_inference_models_loaded_bytes", ())] > 0
    cpu = (("model", "lin"), ("provider", "CPUExecutionProvider"), ("variant", "fp32"), ("version", "2"))
    assert m[("fermion_inference_model_provider_info", cpu)] == 1
    assert m[("fermion_inference_gpu_fallback", (("model", "lin"), ("variant", "fp32"), ("version", "2")))] == 0
    assert m[("fermion_inference_cold_start_seconds", ())] > 0


def test_a_failed_model_load_is_counted_by_reason(app_with, registry: Registry, tmp_path: Path) -> None:
    client = app_with()
    infer = bearer(api_key(registry, "infer"))
    bad = tmp_path / "store" / "models" / "default" / "lin" / "versions" / "2" / "model.onnx"
    bad.chmod(0o644)
    bad.write_bytes(b"not onnx")  # the bytes no longer match the manifest: an integrity refusal
    assert client.post("/v2/models/lin@latest/infer", json=_body(), headers=infer).status_code == 503
    m = scrape(client, bearer(api_key(registry, "read")))
    assert sum(v for (n, _), v in m.items() if n == "fermion_inference_model_load_failures_total") == 1


def test_metrics_need_a_read_key_unless_told_otherwise_and_vanish_when_off(app_with, registry: Registry) -> None:
    client = app_with()
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=bearer(api_key(registry, "infer"))).status_code == 403
    assert app_with(metrics_auth=False).get("/metrics").status_code == 200
    off = app_with(metrics=False)
    assert off.get("/metrics", headers=bearer(api_key(registry, "read"))).status_code == 404
    infer = bearer(api_key(registry, "infer"))
    assert off.post("/v2/models/lin/infer", json=_body(), headers=infer).status_code == 200


def test_access_log_line_has_route_template_status_and_request_id(
    app_with, registry: Registry, caplog: pytest.LogCaptureFixture
) -> None:
    client = app_with()
    with caplog.at_level(logging.INFO, logger="fermion.access"):
        headers = {**bearer(api_key(registry, "infer")), "X-Request-Id": "abc123"}
        r = client.post("/v2/models/lin/infer", json=_body(), headers=headers)
    assert r.headers["x-request-id"] == "abc123"
    (record,) = [r for r in caplog.records if r.name == "fermion.access"]
    line = json.loads(logs.JsonFormatter("inference").format(record))
    assert line["route"] == "/v2/models/{name}/infer"  # the template, never the raw path
    assert (line["status"], line["method"], line["request_id"]) == (200, "POST", "abc123")
    assert line["function"] == "inference"
    assert line["tenant"] == "default"
    assert line["duration_ms"] > 0


def test_json_lines_carry_the_context_and_third_party_chatter_is_demoted() -> None:
    formatter, third = logs.JsonFormatter("trainer"), logs.ThirdParty()
    with logs.bound(job_id="job-1", tenant="acme"):
        record = logging.LogRecord("fermion.trainer", logging.INFO, __file__, 1, "epoch %d", (3,), None)
        line = json.loads(formatter.format(record))
    assert {k: line[k] for k in ("level", "function", "message", "job_id", "tenant")} == {
        "level": "INFO",
        "function": "trainer",
        "message": "epoch 3",
        "job_id": "job-1",
        "tenant": "acme",
    }
    assert line["time"].endswith("Z") and "request_id" not in line
    quantiser = "/x/lib/python3.11/site-packages/onnxruntime/quantization/quantize.py"
    chatter = logging.LogRecord("root", logging.INFO, quantiser, 1, "Quantization parameters ...", (), None)
    assert not third.filter(chatter)
    warning = logging.LogRecord("root", logging.WARNING, quantiser, 1, "something real", (), None)
    assert third.filter(warning) and warning.name == "thirdparty.onnxruntime"


def test_under_lambda_each_request_is_also_a_cloudwatch_emf_line(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "fermion-inference")  # what Lambda sets
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    client = TestClient(create_app(lambda: runtime, lambda: settings, batching=False))
    capsys.readouterr()
    assert (
        client.post("/v2/models/lin/infer", json=_body(), headers=bearer(api_key(registry, "infer"))).status_code == 200
    )
    assert client.post("/v2/models/lin/infer", json=_body()).status_code == 401
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith('{"_aws"')]
    answered, refused = records
    (directive,) = answered["_aws"]["CloudWatchMetrics"]
    assert directive["Namespace"] == "Fermion" and directive["Dimensions"] == [["Function", "Model"]]
    assert {m["Name"]: m["Unit"] for m in directive["Metrics"]} == {"Requests": "Count", "Latency": "Milliseconds"}
    assert (answered["Function"], answered["Model"], answered["Requests"]) == ("inference", "lin", 1)
    assert answered["Latency"] > 0
    assert (refused["Reason"], refused["Refused"]) == ("Unauthorized", 1)


def test_a_trainer_whose_metrics_port_is_taken_works_on_without_it(caplog: pytest.LogCaptureFixture) -> None:
    import socket

    from fermion.service.observability.trainer import serve_metrics

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with caplog.at_level(logging.ERROR, logger="fermion.trainer"):
            assert serve_metrics(taken.getsockname()[1]) is False
    assert "metrics not served" in caplog.text
