"""Shared fixtures: a real nats-server per session, real stores, real ONNX models."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from fermion.events import Bus, ConsumerPolicy
from fermion.infra import NatsServer
from fermion.infra.localstack import LocalStack
from fermion.infra.localstack import installed as localstack_installed
from fermion.model_store import Draft, Lineage, LocalDirStore, Registry, Signature, TensorSpec, generate_key_pair
from fermion.model_store.backends.s3 import S3Store

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server with JetStream on an ephemeral port and a temporary store directory."""
    with NatsServer(tmp_path_factory.mktemp("nats")) as server:
        yield server


@pytest.fixture
async def bus(nats_server: NatsServer) -> AsyncIterator[Bus]:
    """A connected bus with the streams and the trainers' consumer provisioned."""
    b = await Bus.connect(nats_server.url)
    await b.provision(ConsumerPolicy(ack_wait_s=10, max_deliver=3))
    yield b
    await b.close()


@pytest.fixture(scope="session")
def localstack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """LocalStack in host mode on an ephemeral loopback port: a real S3 API."""
    if not localstack_installed():
        pytest.fail("LocalStack is not installed: run ./scripts/setup (python -m fermion.infra.localstack install)")
    with LocalStack(tmp_path_factory.mktemp("localstack"), port=free_port()) as ls:
        yield ls


def s3_client(endpoint_url: str) -> Any:
    """A boto3 S3 client for LocalStack (which accepts any credentials)."""
    return boto3.client(
        "s3", endpoint_url=endpoint_url, region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
    )


@pytest.fixture
def s3_store(localstack: LocalStack) -> S3Store:
    """A fresh bucket on LocalStack, under a prefix."""
    client = s3_client(localstack.endpoint_url)
    bucket = f"fermion-{uuid.uuid4().hex[:12]}"
    client.create_bucket(Bucket=bucket)
    return S3Store(bucket, "reg", client=client)


@pytest.fixture
def registry(tmp_path: Path) -> Registry:
    """A registry on a local directory (test_registry_contract.py runs the contract on S3 as well)."""
    return Registry(LocalDirStore(tmp_path / "store"), tmp_path / "cache")


def api_key(registry: Registry, *scopes: str, tenant: str = "default") -> str:
    """A fresh API key in the registry's store (the store every function reads keys from)."""
    from fermion.model_store import KeyStore

    _, key = KeyStore(registry.store).create(tenant, list(scopes) or ["infer"])  # type: ignore[arg-type]
    return key


def bearer(key: str) -> dict[str, str]:
    """The header that carries `key`."""
    return {"Authorization": f"Bearer {key}"}


def linear_onnx(n_in: int = 4, n_out: int = 3, seed: int = 0) -> bytes:
    """A real ONNX model (y = x·W + b, dynamic batch) built without torch."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.normal(size=(n_in, n_out)).astype(np.float32), "W")
    b = numpy_helper.from_array(rng.normal(size=(n_out,)).astype(np.float32), "B")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["input", "W"], ["xw"]), helper.make_node("Add", ["xw", "B"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", n_in])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", n_out])],
        [w, b],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    buf = io.BytesIO()
    onnx.save(model, buf)
    return buf.getvalue()


def linear_draft(n_in: int = 4, n_out: int = 3, lineage: Lineage | None = None) -> Draft:
    """A manifest draft matching `linear_onnx`."""
    return Draft(
        signature=Signature(
            inputs=[TensorSpec(name="input", datatype="FP32", shape=[-1, n_in])],
            outputs=[TensorSpec(name="logits", datatype="FP32", shape=[-1, n_out])],
        ),
        labels=[str(i) for i in range(n_out)],
        metrics={"accuracy": 0.5},
        lineage=lineage or Lineage(),
    )


class Trainer:
    """A trainer worker running as its own process, as in production."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Trainer:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "fermion.functions.trainer"], env=self.env, stdout=out, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout_s: float = 60.0) -> Trainer:
        """Return once the worker consumes (it logs so after binding the trainers' consumer)."""
        wait_until(lambda: "trainers: consuming" in self.log.read_text(errors="replace"), timeout_s, "trainer ready")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="session")
def stack_env(nats_server: NatsServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The environment of the session's functions: one NATS, one local store, one home."""
    home = tmp_path_factory.mktemp("home")
    generate_key_pair(home / "keys")  # trainers sign with it; inference processes trust HOME/keys/*.pub
    return {
        **os.environ,
        "FERMION_HOME": str(home),
        "FERMION_NATS_URL": nats_server.url,
        "FERMION_STORE_URL": (home / "store").as_uri(),
        "FERMION_ACK_WAIT_S": "10",
        "FERMION_MAX_DELIVER": "3",
        "FERMION_RETRY_DELAY_S": "0.5",
        "PYTHONUNBUFFERED": "1",
    }


@pytest.fixture(scope="session")
def trainer(stack_env: dict[str, str]) -> Iterator[Trainer]:
    """One trainer process on the session's NATS and store."""
    t = Trainer(stack_env, Path(stack_env["FERMION_HOME"]) / "trainer.log").start().wait_ready()
    yield t
    t.stop()


@pytest.fixture(scope="session")
def recipe_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tests/fixtures/recipe_pkg pip-installed into a directory: a user's package with `fermion.recipes`."""
    site = tmp_path_factory.mktemp("site")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(REPO / "tests" / "fixtures" / "recipe_pkg"),
        ],
        check=True,
    )
    return site


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll `condition` until it holds; fail the test naming `what` after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}")
        time.sleep(0.05)


def wait_for_model(client: Any, ref: str, timeout_s: float = 120.0) -> dict[str, Any]:
    """The served model's metadata once `ref` (say `name@production`) resolves; fails the test on timeout."""
    from fermion.client import FermionError

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return dict(client.metadata(ref))
        except FermionError:
            time.sleep(0.3)
    pytest.fail(f"{ref} was never served within {timeout_s:.0f}s")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need LocalStack are marked `localstack` (`./scripts/test --no-localstack` leaves them out)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "localstack" in getattr(item, "fixturenames", ()) or "s3" in params.values():
            item.add_marker(pytest.mark.localstack)
