"""The inference function over a real registry and real ONNX Runtime sessions."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from fastapi.testclient import TestClient

from fermion.functions.inference.app import create_app
from fermion.functions.inference.runtime import ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx


@pytest.fixture
def served(registry: Registry, tmp_path: Path) -> Iterator[tuple[TestClient, Registry]]:
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=2)}, linear_draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"], max_body_bytes=20_000)
    runtime = ModelRuntime(registry, settings)
    headers = bearer(api_key(registry, "infer"))
    yield TestClient(create_app(lambda: runtime, lambda: settings), headers=headers), registry


def _body(x: np.ndarray, datatype: str = "FP32", name: str = "input") -> dict:
    return {
        "id": "r1",
        "inputs": [{"name": name, "shape": list(x.shape), "datatype": datatype, "data": x.ravel().tolist()}],
    }


def _reference(seed: int, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(linear_onnx(seed=seed), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_infer_serves_latest_and_matches_onnx_runtime(served) -> None:
    client, _ = served
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    r = client.post("/v2/models/lin@latest/infer", json=_body(x))
    assert r.status_code == 200, r.text
    out = r.json()
    assert (out["model_name"], out["model_version"], out["id"]) == ("lin", "2", "r1")
    # A bare name serves `production`, which the model's first version bootstrapped; training v2 did not move it.
    assert client.post("/v2/models/lin/infer", json=_body(x)).json()["model_version"] == "1"
    (tensor,) = out["outputs"]
    assert (tensor["name"], tensor["shape"], tensor["datatype"]) == ("logits", [5, 3], "FP32")
    np.testing.assert_allclose(np.reshape(tensor["data"], (5, 3)), _reference(2, x), rtol=1e-5)


def test_infer_by_version_and_by_alias(served) -> None:
    client, registry = served
    registry.set_alias("default", "lin", "production", 1)
    x = np.ones((1, 4), np.float32)
    for url in ("/v2/models/lin/versions/1/infer", "/v2/models/lin@production/infer"):
        r = client.post(url, json=_body(x))
        assert r.status_code == 200, r.text
        assert r.json()["model_version"] == "1"
        np.testing.assert_allclose(r.json()["outputs"][0]["data"], _reference(1, x).ravel(), rtol=1e-5)


def test_metadata_reports_the_providers_the_session_really_got(served) -> None:
    client, _ = served
    meta = client.get("/v2/models/lin@latest").json()
    assert meta["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}]
    assert meta["versions"] == ["2"]
    assert meta["parameters"]["providers"] == ["CPUExecutionProvider"]
    assert meta["parameters"]["gpu_fallback"] is False
    ready = client.get("/v2/health/ready").json()
    assert ready["models"] == [
        {"name": "lin", "version": 2, "providers": ["CPUExecutionProvider"], "gpu_fallback": False}
    ]
    assert client.get("/v2/health/live").json() == {"live": True}
    anonymous = client.get("/v2/health/ready", headers={"Authorization": ""}).json()
    assert anonymous == {"ready": True, "models": []}  # a probe learns nothing about what is loaded
    assert client.get("/v2/models/lin/ready").json()["ready"] is True


def test_a_gpu_request_that_lands_on_cpu_is_flagged_or_refused(registry: Registry, tmp_path: Path) -> None:
    registry.register("default", "lin", {"model.onnx": linear_onnx()}, linear_draft())
    gpu = ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime build has no CUDA provider")
    from fermion.functions.inference.runtime import ModelRef

    runtime = ModelRuntime(registry, InferenceSettings(home=tmp_path, providers=gpu))
    model = runtime.get(ModelRef("lin"))
    got_gpu = "CUDAExecutionProvider" in model.providers
    assert model.gpu_fallback is (not got_gpu)
    if not got_gpu:
        strict = ModelRuntime(registry, InferenceSettings(home=tmp_path, providers=gpu, require_gpu=True))
        with pytest.raises(Exception, match="GPU provider was required"):
            strict.get(ModelRef("lin"))


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (_body(np.ones((2, 5), np.float32)), 400, r"must have shape \[-1, 4\]"),
        (_body(np.ones((2, 4), np.int64), "INT64"), 400, "must be FP32, got INT64"),
        (_body(np.ones((2, 4), np.float32), name="pixels"), 400, "no input 'pixels'"),
        (
            {"inputs": [{"name": "input", "shape": [2, 4], "datatype": "FP32", "data": [1.0] * 7}]},
            400,
            "needs 8 elements, data has 7",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ["a", 1, 2, 3]}]},
            400,
            "data is not all FP32",
        ),
        (
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]},
            400,
            "unsupported datatype 'FP99'",
        ),
        ({"inputs": []}, 400, "inputs"),
        ({"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, "NaN", 3, 4]}]}, 400, "NaN"),
        (
            {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "-Infinity", 4]}]},
            400,
            "NaN",
        ),
        (
            {
                "inputs": [
                    {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": ["Infinity", 2, "-Infinity", 4]}
                ]
            },
            400,
            "NaN or infinity",
        ),
        (  # more values than all_finite adds up itself: numpy checks them
            {"inputs": [{"name": "input", "shape": [100, 4], "datatype": "FP32", "data": [1.0] * 399 + ["NaN"]}]},
            400,
            "NaN or infinity",
        ),
        (_body(np.ones((3000, 4), np.float32)), 413, "limit is 20000"),
    ],
)
def test_bad_requests_get_a_4xx_naming_the_problem(served, body: dict, status: int, message: str) -> None:
    client, _ = served
    r = client.post("/v2/models/lin/infer", json=body)
    assert r.status_code == status, r.text[:300]
    assert re.search(message, r.json()["error"]), r.json()


def test_named_protocol_defects_are_400s(served) -> None:
    client, _ = served
    header = json.dumps(
        {"inputs": [{"name": "input", "shape": [-2, -32], "datatype": "FP32", "parameters": {"binary_data_size": 256}}]}
    ).encode()
    r = client.post(
        "/v2/models/lin/infer",
        content=header + bytes(256),
        headers={"Inference-Header-Content-Length": str(len(header))},
    )
    assert r.status_code == 400 and "negative dimension" in r.json()["error"]
    for version in ("²", "٣", "0"):  # str.isdigit() takes the first two; only ASCII versions from 1 are versions
        r = client.post(f"/v2/models/lin/versions/{version}/infer", json=_body(np.ones((1, 4), np.float32)))
        assert r.status_code == 400 and "invalid model version" in r.json()["error"], version
    twice = _body(np.ones((1, 4), np.float32))
    twice["inputs"] = twice["inputs"] * 2
    r = client.post("/v2/models/lin/infer", json=twice)
    assert r.status_code == 400 and "input names must be unique; ['input']" in r.json()["error"]


def test_malformed_json_is_a_400(served) -> None:
    client, _ = served
    r = client.post("/v2/models/lin/infer", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert "invalid inference request" in r.json()["error"]


def test_unknown_models_versions_and_aliases_are_404(served) -> None:
    client, _ = served
    x = _body(np.ones((1, 4), np.float32))
    for url, message in [
        ("/v2/models/nope/infer", "no model 'nope'"),
        ("/v2/models/lin/versions/9/infer", "no version 9"),
        ("/v2/models/lin@staging/infer", "no alias 'staging'"),
    ]:
        r = client.post(url, json=x)
        assert r.status_code == 404, r.text
        assert message in r.json()["error"]
    assert client.post("/v2/models/lin/versions/0/infer", json=x).status_code == 400


def test_a_tampered_model_file_is_refused_not_loaded(served) -> None:
    client, registry = served
    registry.store.put("models/default/lin/versions/2/model.onnx", linear_onnx(seed=7))
    r = client.post("/v2/models/lin@latest/infer", json=_body(np.ones((1, 4), np.float32)))
    assert r.status_code == 503
    assert "expected sha256" in r.json()["error"]


def test_a_model_onnx_runtime_cannot_load_is_refused_without_internal_paths(served, tmp_path: Path) -> None:
    """Issue 25: the 503 for a graph ONNX Runtime cannot load quoted the model's path in our cache."""
    import onnx
    from onnx import TensorProto, helper

    client, registry = served
    node = helper.make_node("Exfiltrate", ["input"], ["output"], domain="com.evil")
    graph = helper.make_graph(
        [node],
        "evil",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [None, 4])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [None, 3])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.evil", 1)])
    registry.register("default", "evil", {"model.onnx": model.SerializeToString()}, linear_draft())
    assert onnx.load_from_string(model.SerializeToString()).graph.node[0].domain == "com.evil"
    r = client.post("/v2/models/evil/infer", json=_body(np.ones((1, 4), np.float32)))
    assert r.status_code == 503, r.text
    assert "cannot load" in r.json()["error"]
    assert str(tmp_path) not in r.text and "/cache/" not in r.text, r.text


def _api_gateway_v2(method: str, path: str, body: dict | None = None) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    return {
        "version": "2.0",
        "routeKey": f"{method} {path}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "abc.execute-api.us-east-1.amazonaws.com"},
        "requestContext": {
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "1.2.3.4",
                "userAgent": "test",
            },
            "stage": "$default",
            "requestId": "id",
            "routeKey": f"{method} {path}",
            "accountId": "123",
            "apiId": "abc",
            "domainName": "abc.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "abc",
            "time": "22/Nov/2026:00:00:00 +0000",
            "timeEpoch": 0,
        },
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


@pytest.fixture
def lambda_loop() -> Iterator[None]:
    # Lambda's main thread has an event loop for Mangum; pytest-asyncio's tests leave none set.
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield
    asyncio.set_event_loop(None)
    loop.close()


def _api_gateway_v1(method: str, path: str, body: dict | None = None) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    return {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "Host": "abc.execute-api.us-east-1.amazonaws.com"},
        "multiValueHeaders": {"Content-Type": ["application/json"]},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": {"proxy": path},
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/prod{path}",
            "stage": "prod",
            "requestId": "id",
            "accountId": "123",
            "apiId": "abc",
            "identity": {"sourceIp": "1.2.3.4", "userAgent": "test"},
        },
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


def _function_url(method: str, path: str, body: dict | None = None) -> dict:
    event = _api_gateway_v2(method, path, body)
    event["routeKey"] = "$default"
    event["requestContext"]["domainName"] = "abcdefg.lambda-url.us-east-1.on.aws"
    event["requestContext"]["routeKey"] = "$default"
    event["headers"]["host"] = "abcdefg.lambda-url.us-east-1.on.aws"
    return event


def _alb(method: str, path: str, body: dict | None = None) -> dict:
    raw = json.dumps(body).encode() if body is not None else b""
    return {
        "requestContext": {"elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123:targetgroup/f/1"}},
        "httpMethod": method,
        "path": path,
        "queryStringParameters": {},
        "headers": {"content-type": "application/json", "host": "fermion.example", "x-forwarded-for": "1.2.3.4"},
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


@pytest.mark.parametrize(
    "shape",
    [_api_gateway_v1, _api_gateway_v2, _function_url, _alb],
    ids=["api-gateway-v1", "http-api-v2", "function-url", "alb"],
)
def test_mangum_handler_answers_every_event_shape(served, lambda_loop, shape, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # Importing the handler sets PYDANTIC_DISABLE_PLUGINS for its process: here, only for this test.
    monkeypatch.setenv("PYDANTIC_DISABLE_PLUGINS", "__all__")
    from fermion.functions.inference.handler import make_handler  # Mangum binds the current loop

    client, _ = served
    handler = make_handler(
        create_app(client.app.state.services.runtime, client.app.state.services.settings, batching=False)
    )

    def signed(event: dict) -> dict:  # the caller's API key, as each event shape carries headers
        event["headers"]["authorization"] = client.headers["authorization"]
        if "multiValueHeaders" in event:
            event["multiValueHeaders"]["authorization"] = [client.headers["authorization"]]
        return event

    x = np.ones((2, 4), np.float32)
    out = handler(signed(shape("POST", "/v2/models/lin@latest/infer", _body(x))), None)
    assert out["statusCode"] == 200, out
    body = json.loads(base64.b64decode(out["body"]) if out.get("isBase64Encoded") else out["body"])
    np.testing.assert_allclose(body["outputs"][0]["data"], _reference(2, x).ravel(), rtol=1e-5)
    bad = handler(signed(shape("POST", "/v2/models/lin/infer", _body(np.ones((2, 3), np.float32)))), None)
    assert bad["statusCode"] == 400
    assert handler(shape("POST", "/v2/models/lin/infer", _body(x)), None)["statusCode"] == 401
    assert handler(shape("GET", "/v2/health/live"), None)["statusCode"] == 200


def test_the_variant_is_chosen_by_setting_or_per_request(registry: Registry, tmp_path: Path) -> None:
    from fermion.compile import quantize_int8

    fp32 = linear_onnx(n_in=64, n_out=8)
    int8, _ = quantize_int8(fp32)
    draft = linear_draft(64, 8).model_copy(update={"variants": {"fp32": "model.onnx", "int8": "model.int8.onnx"}})
    registry.register("default", "q", {"model.onnx": fp32, "model.int8.onnx": int8}, draft)
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"], cpu_variant="int8")
    runtime = ModelRuntime(registry, settings)
    client = TestClient(create_app(lambda: runtime, lambda: settings), headers=bearer(api_key(registry, "infer")))
    x = np.ones((1, 64), np.float32)
    assert client.post("/v2/models/q/infer", json=_body(x)).json()["parameters"] == {"variant": "int8"}
    asked = {**_body(x), "parameters": {"variant": "fp32"}}
    assert client.post("/v2/models/q/infer", json=asked).json()["parameters"] == {"variant": "fp32"}
    meta = client.get("/v2/models/q").json()["parameters"]
    assert meta["variants"] == ["fp32", "int8"] and meta["variant"] == "int8"
    r = client.post("/v2/models/q/infer", json={**_body(x), "parameters": {"variant": "fp16"}})
    assert r.status_code == 400 and "has no 'fp16' variant" in r.json()["error"]
    r = client.post("/v2/models/q/infer", json={**_body(x), "parameters": {"variant": "int4"}})
    assert r.status_code == 400 and "parameters.variant" in r.json()["error"]


def test_an_internal_error_is_a_500_with_a_request_id_and_no_details(tmp_path: Path) -> None:
    class Broken:
        def cached(self, *args: object) -> None:
            raise RuntimeError("secret internals at /srv/x.py line 3")

        get = cached

    trusted = InferenceSettings(home=tmp_path, auth="off")  # the request must reach the broken runtime
    app = create_app(lambda: Broken(), lambda: trusted)  # type: ignore[arg-type,return-value]
    r = TestClient(app, raise_server_exceptions=False).post(
        "/v2/models/lin/infer", json=_body(np.ones((1, 4), np.float32))
    )
    assert r.status_code == 500
    assert r.json()["error"] == "internal error" and len(r.json()["request_id"]) == 12
    assert "secret" not in r.text and "Traceback" not in r.text


def test_the_v1_predict_convenience_route(served) -> None:
    client, _ = served
    x = np.random.default_rng(1).normal(size=(3, 4)).astype(np.float32)
    r = client.post("/v1/models/lin@latest:predict", json={"instances": x.tolist()})
    assert r.status_code == 200, r.text
    logits = _reference(2, x)  # the raw outputs stay on the OIP v2 route; :predict answers with names
    assert r.json()["predictions"] == [str(i) for i in logits.argmax(1)] and r.json()["classes"] == ["0", "1", "2"]
    softmax = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    np.testing.assert_allclose(r.json()["probabilities"], softmax, rtol=1e-5)
    assert client.post("/v1/models/lin:predict", json={"instances": [[1.0, 2.0]]}).status_code == 400
    assert client.post("/v1/models/lin:predict", json={"instances": []}).status_code == 400


def test_the_openapi_document_describes_the_infer_routes(served) -> None:
    client, _ = served
    doc = client.get("/openapi.json").json()
    for path in ("/v2/models/{name}/infer", "/v2/models/{name}/versions/{model_version}/infer"):
        op = doc["paths"][path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/InferenceRequest")
        assert {p["name"] for p in op["parameters"]} <= {"name", "model_version"}
    assert "RequestInput" in doc["components"]["schemas"]
    assert [p["name"] for p in doc["paths"]["/v2/models/{name}/ready"]["get"]["parameters"]] == ["name"]
    predict = doc["paths"]["/v1/models/{name}:predict"]["post"]
    assert predict["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/PredictRequest")
    assert "PredictRequest" in doc["components"]["schemas"]
    ok = predict["responses"]["200"]["content"]["application/json"]["schema"]
    assert (
        ok["$ref"].endswith("/PredictResponse")
        and "probabilities" in doc["components"]["schemas"]["PredictResponse"]["properties"]
    )


def test_an_oversized_body_is_refused_before_it_is_read(served) -> None:
    client, _ = served
    r = client.post("/v2/models/lin/infer", content=b"{}", headers={"content-length": "999999999"})
    assert r.status_code == 413 and "999999999 bytes; the limit is 20000" in r.json()["error"]
    chunks = (b" " * 4096 for _ in range(10))  # no Content-Length: sent chunked, counted as it arrives
    r = client.post("/v2/models/lin/infer", content=chunks)
    assert r.status_code == 413 and "over the limit of 20000 bytes" in r.json()["error"]
    small = (part for part in [json.dumps(_body(np.ones((1, 4), np.float32))).encode()])
    assert client.post("/v2/models/lin/infer", content=small).status_code == 200


async def test_runs_are_routed_by_cost_per_row(registry: Registry, tmp_path: Path) -> None:
    import httpx

    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=2)}, linear_draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    runtime = ModelRuntime(registry, settings)
    headers = bearer(api_key(registry, "infer"))
    rows = [np.random.default_rng(i).normal(size=(1, 4)).astype(np.float32) for i in range(24)]
    for batching, expect_batches in ((True, True), (False, False)):
        app = create_app(lambda: runtime, lambda: settings, batching=batching)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=headers) as client:
            assert (await client.post("/v2/models/lin/infer", json=_body(rows[0]))).status_code == 200
            (model,) = runtime.loaded
            lane = app.state.services.scheduler.lane(model)
            assert lane.batcher is None  # microseconds per row: every run inline, nothing batched
            lane.row_ms = 5.0  # as if each row cost 5 ms: concurrent requests now share runs
            answers = await asyncio.gather(*(client.post("/v2/models/lin/infer", json=_body(x)) for x in rows))
        for x, r in zip(rows, answers, strict=True):
            assert r.status_code == 200, r.text
            np.testing.assert_allclose(r.json()["outputs"][0]["data"], _reference(2, x).ravel(), rtol=1e-5)
        if expect_batches:
            assert lane.batcher is not None and lane.batcher.batches < len(rows)
        else:
            assert lane.batcher is None  # one request per invocation (Mangum): a worker thread, never a batch


def test_the_infer_route_answers_without_the_framework(served) -> None:  # type: ignore[no-untyped-def]
    """A warm infer never builds the FastAPI app (its import is cold-start time); any other route does."""
    client, _ = served
    x = np.ones((1, 4), np.float32)
    with client:  # the lifespan, as uvicorn's CLI and TestClient send it: answered by the core
        assert client.post("/v2/models/lin/infer", json=_body(x)).status_code == 200
        r = client.post("/v2/models/lin/versions/1/infer", json=_body(x))
        assert r.status_code == 200 and r.headers["fermion-model-version"] == "1"
        assert client.app._control is None
        assert client.get("/v2/models/lin/infer").status_code == 405  # another method: as a router answers
        assert client.app._control is not None
        assert client.get("/v2/health/live").json() == {"live": True}
        paths = client.app.openapi()["paths"]
        assert {"/v2/models/{name}/infer", "/v2/models/{name}/versions/{model_version}/infer"} <= set(paths)


def test_a_client_that_leaves_mid_body_gets_no_answer_and_breaks_nothing(served) -> None:  # type: ignore[no-untyped-def]
    client, _ = served
    app = client.app
    sent: list[dict] = []
    messages = [
        {"type": "http.request", "body": b'{"inputs": [', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> dict:
        return messages.pop(0)

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/v2/models/lin/infer",
        "headers": [(b"authorization", client.headers["authorization"].encode())],
    }
    asyncio.run(app(scope, receive, send))
    assert sent == []
    assert client.post("/v2/models/lin/infer", json=_body(np.ones((1, 4), np.float32))).status_code == 200


def test_a_cheap_model_gets_one_intra_op_thread_and_a_heavy_one_the_pool(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from fermion.functions.inference import runtime as rt

    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"])
    threads = rt.ModelRuntime(registry, settings).get(ModelRef.parse("lin"), "default")
    assert threads.session.get_session_options().intra_op_num_threads == 1  # a one-row run in microseconds
    if rt.cpu_quota() == 1:
        pytest.skip("one CPU here: the pool is one thread too")
    monkeypatch.setattr(rt, "INLINE_RUN_MS", 0.0)  # every run is "heavy": the session is made again with the pool
    heavy = rt.ModelRuntime(registry, settings).get(ModelRef.parse("lin"), "default")
    assert heavy.session.get_session_options().intra_op_num_threads == rt.cpu_quota()
    pinned = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"], intra_op_threads=3)
    assert (
        rt.ModelRuntime(registry, pinned)
        .get(ModelRef.parse("lin"), "default")
        .session.get_session_options()
        .intra_op_num_threads
        == 3
    )  # an explicit setting is taken as it is
