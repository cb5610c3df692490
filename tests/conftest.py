"""Shared fixtures (and the marking hook): a real nats-server per session, real stores, `fermion up`'s stack.

The helpers they use, and tests import, are in tests/helpers.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from fermion.events import Bus, ConsumerPolicy
from fermion.infra import NatsServer, Stack
from fermion.infra.localstack import LocalStack
from fermion.infra.localstack import installed as localstack_installed
from fermion.model_store import LocalDirStore, Registry, generate_key_pair
from fermion.model_store.backends.s3 import S3Store
from tests.helpers import REPO, StackOptions, Trainer, free_port, running_stack, s3_client
from tests.helpers.leaks import stranded_ingest_bus
from tests.helpers.s3 import close_s3_clients

_unclosed: list[str] = []


@pytest.fixture(autouse=True)
def _garbage_collected(request: pytest.FixtureRequest) -> Iterator[None]:
    """Collect each test's cyclic garbage as it ends, so what it dropped unclosed is named with it.

    A client dropped inside a reference cycle (a boto3 client, an HTTP connection pool) is finalised
    whenever the collector next runs: during some later, unrelated test, whose run its ResourceWarning
    then failed at random (CI twice). Collected here, after the test's own fixtures are torn down, each
    such warning is kept against the test that left it and listed at the end of the run.
    """
    yield
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        gc.collect()
    _unclosed.extend(f"{request.node.nodeid}: {w.message}" for w in caught if issubclass(w.category, ResourceWarning))
    if stranded := stranded_ingest_bus():
        _unclosed.append(f"{request.node.nodeid}: {stranded}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """List what tests left unclosed (see _garbage_collected)."""
    if _unclosed:
        terminalreporter.section("left unclosed, found by the collector after the test named")
        for line in _unclosed:
            terminalreporter.line(line)


@pytest.fixture(autouse=True)
def _s3_clients_closed() -> Iterator[None]:
    """Each test's boto3 clients are closed when it ends (tests/helpers/s3.py)."""
    yield
    close_s3_clients()


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


@pytest.fixture(scope="module")
def stack_options() -> StackOptions:
    """`fermion up`'s defaults; a test module overrides this fixture to vary its `stack` (S3, env, metrics)."""
    return StackOptions()


@pytest.fixture(scope="module")
def stack(stack_options: StackOptions, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """`fermion up`'s stack, one per test module, on free loopback ports with its own FERMION_HOME."""
    with running_stack(tmp_path_factory.mktemp("fermion-home"), stack_options) as s:
        yield s


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that need LocalStack are marked `localstack` (`./scripts/test --no-localstack` leaves them out)."""
    for item in items:
        params = getattr(getattr(item, "callspec", None), "params", {})
        if "localstack" in getattr(item, "fixturenames", ()) or "s3" in params.values():
            item.add_marker(pytest.mark.localstack)
