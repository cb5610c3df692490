"""The Lambda image answers an API Gateway v2 event through the Lambda Runtime API.

The Runtime Interface Emulator is not on the package index, so this test is the Lambda service's side
of the documented Runtime API (GET .../invocation/next, POST .../{id}/response|error, init/error): a
small HTTP server on 127.0.0.1. The real image runs with AWS_LAMBDA_RUNTIME_API pointing at it, its
entry point (awslambdaric) calls the real handler, and the handler reads a signed version from a store
mounted read-only.
"""

from __future__ import annotations

import base64
import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from fermion.model_store import KeyStore, StoreSettings, generate_key_pair, open_registry
from tests.helpers.containers import image
from tests.helpers.models import linear_draft, linear_onnx

pytestmark = [pytest.mark.deploy, pytest.mark.containers]
_API = "/2018-06-01/runtime"


class RuntimeAPI(ThreadingHTTPServer):
    """The Lambda service's half of the Runtime API: hands out events, collects answers."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.events: queue.Queue[tuple[str, dict]] = queue.Queue()
        self.answers: dict[str, tuple[str, dict]] = {}
        self.init_errors: list[dict] = []
        self.answered = threading.Condition()

    def invoke(self, event: dict, timeout_s: float = 60.0) -> tuple[str, dict]:
        """Queue `event` and wait for the function's response or error."""
        request_id = str(uuid.uuid4())
        self.events.put((request_id, event))
        with self.answered:
            if not self.answered.wait_for(lambda: request_id in self.answers or bool(self.init_errors), timeout_s):
                raise TimeoutError(f"no answer to {request_id} in {timeout_s} s")
        if self.init_errors:
            raise AssertionError(f"init failed: {self.init_errors[0]}")
        return self.answers[request_id]


class _Handler(BaseHTTPRequestHandler):
    server: RuntimeAPI
    protocol_version = "HTTP/1.1"  # the client keeps its connection, as with the Lambda service

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        assert self.path == f"{_API}/invocation/next", self.path
        try:
            request_id, event = self.server.events.get(timeout=60)
        except queue.Empty:
            self.send_error(503)  # the client asks again
            return
        body = json.dumps(event).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")  # the client reads it unconditionally
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(int(time.time() * 1000) + 30_000))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn", "arn:aws:lambda:us-east-1:123:function:inference")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
        parts = self.path.removeprefix(_API + "/").split("/")
        with self.server.answered:
            if parts[:2] == ["init", "error"]:
                self.server.init_errors.append(body)
            else:
                self.server.answers[parts[1]] = (parts[2], body)
            self.server.answered.notify_all()
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def runtime_api() -> Iterator[RuntimeAPI]:
    server = RuntimeAPI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _event(path: str, body: dict, key: str) -> dict:
    raw = json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": f"Bearer {key}", "host": "api.example.com"}
    http = {"method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "1.2.3.4", "userAgent": "t"}
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {"http": http, "stage": "$default", "requestId": "r", "timeEpoch": 0},
        "body": base64.b64encode(raw).decode(),
        "isBase64Encoded": True,
    }


@pytest.mark.timeout(600)
def test_the_lambda_image_answers_api_gateway_through_the_runtime_api(runtime_api: RuntimeAPI, tmp_path: Path) -> None:
    tag = image("lambda")
    home = tmp_path / "home"
    _, public = generate_key_pair(home / "keys")
    settings = StoreSettings(home=home, store_url=(tmp_path / "store").as_uri())
    registry = open_registry(settings)
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=3)}, linear_draft())
    _, key = KeyStore(registry.store).create("default", ["infer"])
    x = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    request = {"inputs": [{"name": "input", "shape": [3, 4], "datatype": "FP32", "data": x.ravel().tolist()}]}
    expected = ort.InferenceSession(linear_onnx(seed=3), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]

    store = tmp_path / "store"
    cmd = ["docker", "run", "-d", "--network", "host", "-v", f"{store}:/store:ro"]
    env = {
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{runtime_api.server_address[1]}",
        "FERMION_STORE_URL": "file:///store",
        "FERMION_TRUSTED_KEYS": json.dumps([public.read_text().strip()]),
    }
    for name, value in env.items():
        cmd += ["-e", f"{name}={value}"]
    started = time.monotonic()
    container = subprocess.run([*cmd, tag], capture_output=True, text=True, check=True).stdout.strip()
    try:
        kind, answer = runtime_api.invoke(_event("/v2/models/lin/infer", request, key))
        first_s = time.monotonic() - started
        assert kind == "response", answer
        assert answer["statusCode"] == 200, answer
        body = json.loads(base64.b64decode(answer["body"]) if answer.get("isBase64Encoded") else answer["body"])
        got = np.asarray(body["outputs"][0]["data"], dtype=np.float32).reshape(expected.shape)
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
        # A warm invocation: the same process, the model already loaded.
        t0 = time.monotonic()
        kind, answer = runtime_api.invoke(_event("/v2/models/lin/infer", request, "fmn_not_a_key"))
        warm_s = time.monotonic() - t0
        assert kind == "response" and answer["statusCode"] == 401, answer
        print(f"lambda image: container start + init + first invocation {first_s:.2f} s; warm {warm_s * 1000:.0f} ms")
    finally:
        logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
        subprocess.run(["docker", "rm", "-f", container], capture_output=True)
        print(logs.stdout[-2000:], logs.stderr[-2000:])
