"""The OpenAPI documents tell the truth: Schemathesis against the HTTP functions, in-process (issue 12).

Each function's app is built over real parts (a real nats-server, a registry on a local directory,
a real admin key) and called through Schemathesis' ASGI transport, no socket. For every operation
of its document Schemathesis generates requests that fit the document (positive), requests that
do not (negative), both with the key, and requests without a key; every answer must be documented
(status and JSON body) and none may be a 5xx. The example counts are small and the generation is
derandomised, so a run is bounded and reproducible: a failure names the operation and a `curl` that
repeats it.

A function plugs in as one `Target` fixture and one `pytest.param` in `TARGETS`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import hypothesis
import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from fermion.events import Bus, ConsumerPolicy
from fermion.functions.inference.app import create_app as inference_app
from fermion.functions.inference.runtime import ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.functions.ingest.app import create_app
from fermion.functions.ingest.deps import _BusHolder, get_bus, get_datasets, get_keys, get_registry
from fermion.functions.ingest.settings import IngestSettings
from fermion.infra import NatsServer
from fermion.model_store import DatasetStore, KeyStore, Registry
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

pytestmark = pytest.mark.integration

# Per operation and mode: about 30 operations x 3 modes in ~20 s here. 150 (and unseeded runs)
# found nothing more; the 500 they found first is pinned by test_ingest.py.
EXAMPLES = 25
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
SETTINGS = hypothesis.settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases on every run and machine
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure's curl is already small enough
    suppress_health_check=list(HealthCheck),
)


@dataclass
class Target:
    """A function's app under test, the headers that authenticate a caller, and fixed parameters per operation."""

    app: Any  # an ASGI app serving /openapi.json
    headers: dict[str, str]
    fixed_query: dict[str, dict[str, Any]] = field(default_factory=dict)  # by operation label


class ConnectedBus:
    """The ingest app, with its bus connected on the event loop that serves its requests.

    Schemathesis runs an ASGI app on an event loop of its own, in a thread, so the bus cannot be
    connected by the test beforehand (nats-py's connection belongs to one loop): it is connected
    by the first request and closed on that loop by `close`.
    """

    def __init__(self, app: FastAPI, nats_url: str) -> None:
        self.app = app
        self.nats_url = nats_url
        self.bus: Bus | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and self.bus is None:
            self.bus = await Bus.connect(self.nats_url)
            await self.bus.provision(ConsumerPolicy(ack_wait_s=10, max_deliver=3))
            self.loop = asyncio.get_running_loop()
            bus = self.bus
            self.app.dependency_overrides[get_bus] = lambda: bus
        await self.app(scope, receive, send)

    def close(self) -> None:
        if self.bus is not None and self.loop is not None:
            asyncio.run_coroutine_threadsafe(self.bus.close(), self.loop).result(timeout=10)


@pytest.fixture
def ingest_target(nats_server: NatsServer, registry: Registry, tmp_path: Path) -> Iterator[Target]:
    """The ingest function over the session's nats-server and a local-directory store, with an admin key."""
    settings = IngestSettings(home=tmp_path, nats_url=nats_server.url, max_upload_bytes=200_000)
    app = create_app(lambda: settings)
    datasets = DatasetStore(registry.store)
    app.dependency_overrides[get_datasets] = lambda: datasets
    app.dependency_overrides[get_registry] = lambda: registry
    app.dependency_overrides[get_keys] = lambda: KeyStore(registry.store)
    served = ConnectedBus(app, nats_server.url)
    held = _BusHolder.bus  # the process's bus, if an earlier test's app connected one
    try:
        # A long-poll waits up to `wait_s` (20 s by default) for a job that never comes: ask for no wait.
        yield Target(served, bearer(api_key(registry, "admin")), {"GET /v1/jobs/{job}/events": {"wait_s": 0}})
    finally:
        served.close()
    # Every route used the test's bus: none connected one of its own, which nothing would close.
    assert _BusHolder.bus is held, "a route connected the process's bus beside the overridden one"


@pytest.fixture
def inference_target(registry: Registry, tmp_path: Path) -> Target:
    """The inference function over a local-directory registry holding a model, with an `infer` key.

    The model (`lin`, 4 inputs) is there so that generated requests reach the model's own checks
    (shapes, datatypes, names), not only "no such model".
    """
    registry.register("default", "lin", {"model.onnx": linear_onnx(seed=1)}, linear_draft())
    settings = InferenceSettings(home=tmp_path, providers=["CPUExecutionProvider"], max_body_bytes=200_000)
    runtime = ModelRuntime(registry, settings)
    return Target(inference_app(lambda: runtime, lambda: settings), bearer(api_key(registry, "infer")))


TARGETS = [
    pytest.param("ingest_target", id="ingest"),
    pytest.param("inference_target", id="inference"),
]


@pytest.fixture(params=TARGETS)
def target(request: pytest.FixtureRequest) -> Target:
    """Each function's Target, by the name of its fixture."""
    found: Target = request.getfixturevalue(request.param)
    return found


@pytest.mark.parametrize(
    ("mode", "authenticated"),
    [
        pytest.param(GenerationMode.POSITIVE, True, id="positive"),
        pytest.param(GenerationMode.NEGATIVE, True, id="negative"),
        pytest.param(GenerationMode.POSITIVE, False, id="no-key"),
    ],
)
def test_every_answer_is_documented_and_none_is_a_server_error(
    target: Target, mode: GenerationMode, authenticated: bool
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", target.app)
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:
        raw = operation.definition.raw
        if mode is GenerationMode.NEGATIVE and not (raw.get("parameters") or raw.get("requestBody")):
            continue  # nothing to get wrong
        headers = target.headers if authenticated else {}
        strategy = operation.as_strategy(generation_mode=mode, query=target.fixed_query.get(operation.label))
        # An operation needs a key when it names a security requirement and no empty one (optional: a probe).
        needs_key = bool(raw.get("security")) and {} not in raw["security"]
        check = _checked(headers, unauthenticated=not authenticated and needs_key)
        try:
            SETTINGS(given(case=strategy)(check))()
        except (Exception, BaseExceptionGroup) as exc:  # every operation is tried; the test fails once, naming them all
            failures[operation.label] = f"{type(exc).__name__}: {exc}"
    assert operations, "the document has no operations"
    assert not failures, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())


def _checked(headers: dict[str, str], *, unauthenticated: bool) -> Callable[[Any], None]:
    def check(case: Any) -> None:
        response = case.call_and_validate(headers=headers, checks=CHECKS)
        if unauthenticated:  # without a key an authenticated operation answers 401, whatever else is wrong
            assert response.status_code == 401, f"{case.operation.label} without a key: {response.status_code}"

    return check
