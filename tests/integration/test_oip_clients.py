"""Existing Open Inference Protocol clients work unchanged: tritonclient[http] against a running function."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.http as triton

from fermion.model_store import StoreSettings, generate_key_pair, open_registry
from tests.helpers import api_key, bearer, free_port, linear_draft, linear_onnx

pytestmark = pytest.mark.integration


def _start(home: Path, port: int) -> tuple[subprocess.Popen[bytes], str]:
    """Register model `lin` (signed) under `home`, start the inference entry point over it; the process and a key."""
    generate_key_pair(home / "keys")  # the function trusts HOME/keys/*.pub; the registry signs with signing.key
    registry = open_registry(StoreSettings(home=home))
    registry.register("default", "lin", {"model.onnx": linear_onnx(n_in=4, n_out=3, seed=1)}, linear_draft())
    env = {**os.environ, "FERMION_HOME": str(home), "FERMION_PROVIDERS": '["CPUExecutionProvider"]'}
    argv = [sys.executable, "-m", "fermion.functions.inference", "--port", str(port)]
    return subprocess.Popen(argv, env=env), api_key(registry, "infer")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """The inference function from its entry point, on loopback, over a registry with model `lin`; and a key."""
    port = free_port()
    proc, key = _start(tmp_path_factory.mktemp("oip-home"), port)
    url = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://{url}/v2/health/live").status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    yield url, key
    proc.terminate()
    proc.wait(10)


def _reference(x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(linear_onnx(n_in=4, n_out=3, seed=1), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


@pytest.mark.parametrize("binary", [True, False], ids=["binary-tensors", "json-tensors"])
def test_tritonclient_infers_unchanged(served: tuple[str, str], binary: bool) -> None:
    server, key = served
    auth = bearer(key)  # tritonclient passes headers through unchanged
    client = triton.InferenceServerClient(url=server)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("lin", headers=dict(auth))
        meta = client.get_model_metadata("lin", headers=dict(auth))
        assert meta["inputs"][0]["name"] == "input" and meta["outputs"][0]["datatype"] == "FP32"
        x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
        tensor = triton.InferInput("input", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=binary)
        outputs = None if binary else [triton.InferRequestedOutput("logits", binary_data=False)]
        result = client.infer(
            "lin", [tensor], outputs=outputs, request_id="r-1", headers=dict(auth)
        )  # it adds to the dict
        np.testing.assert_allclose(result.as_numpy("logits"), _reference(x), rtol=1e-5)
        assert result.get_response()["id"] == "r-1"
        with pytest.raises(triton.InferenceServerException, match="no API key"):
            client.infer("lin", [tensor], outputs=outputs)
    finally:
        client.close()


def test_a_binary_body_that_lies_about_its_size_is_a_400(served: tuple[str, str]) -> None:
    server, key = served
    header = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","parameters":{"binary_data_size":16}}]}'
    r = httpx.post(
        f"http://{server}/v2/models/lin/infer",
        content=header + b"\x00" * 8,
        headers={"Inference-Header-Content-Length": str(len(header)), **bearer(key)},
    )
    assert r.status_code == 400 and "runs past the end of the body" in r.json()["error"]


def test_a_request_sent_during_start_up_waits_and_is_answered(tmp_path: Path) -> None:
    """The entry point listens before it imports anything, so an early request queues instead of being refused."""
    port = free_port()
    proc, key = _start(tmp_path, port)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                sock = socket.create_connection(("127.0.0.1", port), timeout=30)
                break
            except ConnectionRefusedError:
                assert time.monotonic() < deadline, "the entry point never listened"
                time.sleep(0.002)
        # Connected: the server has not even loaded ONNX Runtime yet, so nothing could answer now.
        assert "onnxruntime" not in Path(f"/proc/{proc.pid}/maps").read_text()
        with sock:
            row = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
            body = json.dumps({"inputs": [row]})
            sock.sendall(
                b"POST /v2/models/lin/infer HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Authorization: Bearer {key}\r\n".encode()
                + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n{body}".encode()
            )
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), answer
        out = json.loads(payload)["outputs"][0]
        np.testing.assert_allclose(out["data"], _reference(np.array([[1, 2, 3, 4]], np.float32)).ravel(), rtol=1e-5)
    finally:
        proc.terminate()
        proc.wait(10)


def test_the_entry_point_says_why_it_cannot_listen() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "fermion.functions.inference", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr and "in use" in done.stderr
