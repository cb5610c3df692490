"""Identity, tenants and integrity on the real stack (`fermion up`'s processes, NATS with users).

Two tenants, every ingest and inference route, and {no key, another tenant's key, a key without the
route's scope, the right key}; the poisoning scenario; NATS refusing clients without the right;
signatures refusing tampered, unsigned and foreign versions; revocation; audit records.
"""

from __future__ import annotations

import asyncio
import io
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fermion.events import Bus, BusError, BusSettings, DatasetRef, TrainingRequest, TrainingRequested, parse_event
from fermion.infra import Stack
from fermion.model_store import Registry, Signer, StoreSettings, open_registry
from tests.helpers import bearer, linear_draft, linear_onnx

pytestmark = pytest.mark.e2e

SCOPES = ["upload", "train", "promote", "infer", "read"]


@dataclass
class World:
    stack: Stack
    ingest: str
    inference: str
    admin: dict[str, str]
    keys: dict[tuple[str, str], str]  # (tenant, "all" | scope missing) -> key

    def key(self, tenant: str, without: str | None = None) -> dict[str, str]:
        return bearer(self.keys[(tenant, without or "all")])

    @property
    def registry(self) -> Registry:
        return open_registry(StoreSettings(home=self.stack.settings.home))


def _npz(seed: int = 0, n: int = 60) -> bytes:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    x = (rng.normal(size=(n, 4)) + y[:, None] * 3).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    return buf.getvalue()


def _push(ingest: str, model: str, seed: int, headers: dict[str, str]) -> None:
    """`fermion models push`'s request: a version registered (and signed) by ingest."""
    files = {"model": ("model.onnx", linear_onnx(seed=seed))}
    r = httpx.post(f"{ingest}/v1/models/{model}/versions", files=files, headers=headers, timeout=30)
    assert r.status_code == 201, r.text


@pytest.fixture(scope="module")
def world(stack: Stack) -> Iterator[World]:
    settings = stack.settings
    admin = bearer(stack.identity.admin_key() or "")
    keys: dict[tuple[str, str], str] = {}
    for tenant in ("acme", "blue"):
        for without in ["all", *SCOPES]:
            scopes = [s for s in SCOPES if s != without]
            r = httpx.post(f"{settings.ingest_url}/v1/keys", json={"tenant": tenant, "scopes": scopes}, headers=admin)
            assert r.status_code == 201, r.text
            keys[(tenant, without)] = r.json()["key"]
    # Tenant acme has model m and dataset d; tenant blue has model n and dataset e, so any answer
    # about m or d to blue's key would be a cross-tenant read. Both pushed over HTTP, as a user would.
    for tenant, model, dataset in (("acme", "m", "d"), ("blue", "n", "e")):
        for seed in (1, 2):
            _push(settings.ingest_url, model, seed, bearer(keys[(tenant, "all")]))
        r = httpx.post(
            f"{settings.ingest_url}/v1/datasets",
            files={"file": (f"{dataset}.npz", _npz())},
            headers=bearer(keys[(tenant, "all")]),
        )
        assert r.status_code == 201, r.text
    yield World(stack, settings.ingest_url, settings.inference_url, admin, keys)


ROW = {"inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1.0, 2.0, 3.0, 4.0]}]}


@dataclass(frozen=True)
class Route:
    """One route: how to call it, the scope it needs, and what the right key gets."""

    function: str
    method: str
    path: str
    scope: str
    ok: int
    body: Callable[[], dict[str, Any]] = dict
    # What a key of the other tenant gets when it names this tenant's resource (by name only).
    foreign: int = 404

    def call(self, world: World, headers: dict[str, str]) -> httpx.Response:
        base = world.ingest if self.function == "ingest" else world.inference
        return httpx.request(self.method, base + self.path, headers=headers, timeout=30, **self.body())


ROUTES = [
    Route("ingest", "POST", "/v1/datasets", "upload", 201, lambda: {"files": {"file": ("e.npz", _npz(1))}}, 201),
    Route(
        "ingest",
        "POST",
        "/v1/trainings",
        "train",
        202,
        lambda: {"json": {"model_name": "t", "dataset": {"name": "d"}, "recipe": {"epochs": 1}}},
    ),
    Route(
        "ingest",
        "POST",
        "/v1/sweeps",
        "train",
        202,
        lambda: {"json": {"model_name": "s", "dataset": {"name": "d"}, "trials": [{"epochs": 1}]}},
    ),
    Route("ingest", "GET", "/v1/models", "read", 200, foreign=200),
    Route("ingest", "GET", "/v1/models/m", "read", 200),
    Route("ingest", "GET", "/v1/models/m/versions/1", "read", 200),
    Route("ingest", "PUT", "/v1/models/m/aliases/staging", "promote", 200, lambda: {"json": {"version": 1}}),
    Route("ingest", "POST", "/v1/models/m/aliases/staging/rollback", "promote", 200),
    Route("ingest", "DELETE", "/v1/models/m/aliases/staging", "promote", 204),
    Route("inference", "GET", "/v2", "infer", 200, foreign=200),
    Route("inference", "GET", "/v2/models/m", "infer", 200),
    Route("inference", "GET", "/v2/models/m/ready", "infer", 200),
    Route("inference", "GET", "/v2/models/m/versions/1", "infer", 200),
    Route("inference", "GET", "/v2/models/m/versions/1/ready", "infer", 200),
    Route("inference", "POST", "/v2/models/m/infer", "infer", 200, lambda: {"json": ROW}),
    Route("inference", "POST", "/v2/models/m/versions/1/infer", "infer", 200, lambda: {"json": ROW}),
    Route("inference", "POST", "/v1/models/m:predict", "infer", 200, lambda: {"json": {"instances": [[1, 2, 3, 4]]}}),
]


def _prepare(world: World, route: Route, tenant: str) -> None:
    """What the right key's call needs in place: two moves of `staging` before a rollback, one before a delete."""
    moves = [1, 2] if route.path.endswith("/rollback") else [1] if route.method == "DELETE" else []
    for version in moves:  # as `fermion models promote m V --alias staging` moves it
        url = f"{world.ingest}/v1/models/m/aliases/staging"
        r = httpx.put(url, json={"version": version}, headers=world.key(tenant), timeout=30)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("route", ROUTES, ids=lambda r: f"{r.method} {r.path}")
def test_every_route_answers_each_caller_exactly(world: World, route: Route) -> None:
    before = _tenant_state(world, "acme")
    assert route.call(world, {}).status_code == 401
    assert route.call(world, {"Authorization": "Bearer fmn_not_a_key"}).status_code == 401
    assert route.call(world, world.key("acme", without=route.scope)).status_code == 403
    foreign = route.call(world, world.key("blue"))  # tenant blue's full key, naming acme's model or dataset
    assert foreign.status_code == route.foreign, foreign.text
    assert _tenant_state(world, "acme") == before, "another tenant's key changed tenant acme"
    if route.path == "/v1/models":
        assert {m["name"] for m in foreign.json()} == {"n"}  # blue sees only its own
    _prepare(world, route, "acme")
    right = route.call(world, world.key("acme"))
    assert right.status_code == route.ok, right.text
    if route.function == "inference" and "infer" in route.path:
        assert right.json()["model_name"] == "m"


def test_naming_another_tenant_needs_an_admin_key(world: World) -> None:
    r = httpx.get(f"{world.ingest}/v1/models", params={"tenant": "blue"}, headers=world.key("acme"))
    assert r.status_code == 403 and "cannot act on tenant 'blue'" in r.json()["error"]
    r = httpx.get(f"{world.ingest}/v1/models", params={"tenant": "blue"}, headers=world.admin)
    assert r.status_code == 200 and [m["name"] for m in r.json()] == sorted(m["name"] for m in r.json())


def _tenant_state(world: World, tenant: str) -> dict[str, Any]:
    """Everything a tenant has in the store that another tenant could change: models, versions, aliases."""
    r = world.registry
    return {"m": r.describe(tenant, "m"), "datasets": sorted(r.store.list(f"datasets/{tenant}/"))}


def test_a_train_key_cannot_change_what_a_model_serves(world: World) -> None:
    """The poisoning scenario: random labels trained into `digits` by a train-only key change nothing served."""
    registry = world.registry  # read only: what is registered and what the aliases point at
    _push(world.ingest, "digits", 3, world.key("acme"))
    trainer_only = bearer(_key(world, "acme", ["upload", "train"]))
    rng = np.random.default_rng(9)
    buf = io.BytesIO()
    np.savez(buf, x=rng.normal(size=(80, 4)).astype(np.float32), y=rng.integers(0, 3, 80))
    r = httpx.post(f"{world.ingest}/v1/datasets", files={"file": ("junk.npz", buf.getvalue())}, headers=trainer_only)
    assert r.status_code == 201, r.text
    body = {"model_name": "digits", "dataset": {"name": "junk"}, "recipe": {"epochs": 2, "label_column": "label"}}
    r = httpx.post(f"{world.ingest}/v1/trainings", json=body, headers=trainer_only)
    assert r.status_code == 202, r.text
    deadline = time.monotonic() + 120
    while registry.versions("acme", "digits") != [1, 2]:
        assert time.monotonic() < deadline, "the poisoned training never registered"
        time.sleep(0.2)
    served = httpx.post(f"{world.inference}/v2/models/digits/infer", json=ROW, headers=world.key("acme"))
    assert served.status_code == 200 and served.json()["model_version"] == "1"
    assert registry.resolve("acme", "digits", "production") == 1 and registry.resolve("acme", "digits", "latest") == 2
    # Nor can it move an alias itself, or sweep with a gate; and nobody moves `latest` by hand.
    r = httpx.put(f"{world.ingest}/v1/models/digits/aliases/production", json={"version": 2}, headers=trainer_only)
    assert r.status_code == 403
    sweep = {"model_name": "digits", "dataset": {"name": "junk"}, "trials": [{"epochs": 1}], "gate": {"minimum": 0}}
    assert httpx.post(f"{world.ingest}/v1/sweeps", json=sweep, headers=trainer_only).status_code == 403
    r = httpx.put(f"{world.ingest}/v1/models/digits/aliases/latest", json={"version": 1}, headers=world.admin)
    assert r.status_code == 400 and "cannot be moved by hand" in r.json()["error"]


def _key(world: World, tenant: str, scopes: list[str], **extra: Any) -> str:
    r = httpx.post(f"{world.ingest}/v1/keys", json={"tenant": tenant, "scopes": scopes, **extra}, headers=world.admin)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


def test_a_revoked_key_stops_working_within_seconds(world: World) -> None:
    key = _key(world, "acme", ["infer"])
    assert httpx.post(f"{world.inference}/v2/models/m/infer", json=ROW, headers=bearer(key)).status_code == 200
    key_id = key.split("_")[1]
    assert httpx.delete(f"{world.ingest}/v1/keys/{key_id}", headers=world.admin).status_code == 200
    revoked_at = time.monotonic()
    while httpx.post(f"{world.inference}/v2/models/m/infer", json=ROW, headers=bearer(key)).status_code == 200:
        assert time.monotonic() - revoked_at < 15, "a revoked key kept working"
        time.sleep(0.1)
    r = httpx.post(f"{world.inference}/v2/models/m/infer", json=ROW, headers=bearer(key))
    assert r.status_code == 401 and "revoked" in r.json()["error"]
    print(f"\nrevocation reached the warm inference function in {time.monotonic() - revoked_at:.2f}s")
    expiring = _key(world, "acme", ["infer"], expires_in_s=0.5)
    time.sleep(0.6)
    r = httpx.post(f"{world.inference}/v2/models/m/infer", json=ROW, headers=bearer(expiring))
    assert r.status_code == 401 and "expired" in r.json()["error"]


def test_tampered_unsigned_and_foreign_versions_are_refused(world: World) -> None:
    registry = world.registry
    for _ in range(4):
        registry.register("acme", "sealed", {"model.onnx": linear_onnx(seed=5)}, linear_draft())
    store, prefix = registry.store, "models/acme/sealed/versions"
    store.put(f"{prefix}/1/model.onnx", linear_onnx(seed=6))  # swapped weights
    raw, _ = store.get(f"{prefix}/2/manifest.json")
    store.put(f"{prefix}/2/manifest.json", raw.replace(b'"accuracy": 0.5', b'"accuracy": 0.99'))
    store.delete(f"{prefix}/3/signature.json")
    foreign = Registry(registry.store, registry.cache.root, signer=Signer(Ed25519PrivateKey.generate()))
    foreign.register("acme", "sealed", {"model.onnx": linear_onnx(seed=5)}, linear_draft())  # version 5
    for filename in ("manifest.json", "signature.json"):  # blue's signed version replayed as acme's 6
        store.put(f"{prefix}/6/{filename}", store.get(f"models/blue/n/versions/1/{filename}")[0])
    reasons = {
        1: "expected sha256",
        2: "does not match its signature",
        3: "is not signed",
        5: "not trusted here",
        6: "acme/sealed version 6 holds the manifest of blue/n version 1",
    }
    for version, reason in reasons.items():
        r = httpx.post(
            f"{world.inference}/v2/models/sealed/versions/{version}/infer", json=ROW, headers=world.key("acme")
        )
        assert r.status_code == 503 and reason in r.json()["error"], (version, r.text)
    ok = httpx.post(f"{world.inference}/v2/models/sealed/versions/4/infer", json=ROW, headers=world.key("acme"))
    assert ok.status_code == 200
    for version in (2, 3, 5, 6):  # ingest verifies too: what a refused manifest claims is never shown
        r = httpx.get(f"{world.ingest}/v1/models/sealed/versions/{version}", headers=world.key("acme"))
        assert r.status_code == 503 and reasons[version] in r.json()["error"] and "0.99" not in r.text, r.text
    assert registry.versions("acme", "sealed") == [1, 2, 3, 4, 5, 6]  # refused, not removed or rewritten


def test_nats_refuses_clients_without_the_right(world: World) -> None:
    url = world.stack.settings.nats_url

    async def scenario() -> None:
        with pytest.raises(BusError, match="Authorization Violation"):
            await Bus.connect(url, timeout_s=2)
        intruder = await Bus.from_settings(world.stack.identity.bus_settings("inference", url), name="intruder")
        admin = await Bus.from_settings(world.stack.identity.bus_settings("admin", url), name="admin")
        try:
            ref = DatasetRef(name="d", sha256="a" * 64, uri="x", format="npz", size=1)
            job = TrainingRequested(tenant="acme", data=TrainingRequest(model_name="m", dataset=ref))
            with pytest.raises(BusError):
                await intruder.publish(job)  # refused by nats-server: no publish permission on jobs
            with pytest.raises(BusError):
                await intruder.queued_jobs()  # nor may it read the job stream
            history = await admin.history("fermion.training.requested", stream="FERMION_JOBS")
            assert job.id not in {parse_event(m.data).id for m in history}
            wrong = BusSettings(nats_url=url, nats_user="trainer", nats_password="guess")  # type: ignore[arg-type]
            with pytest.raises(BusError, match="Authorization Violation"):
                await Bus.from_settings(wrong, name="guesser", timeout_s=2)
            await _audited(admin)
        finally:
            await intruder.close()
            await admin.close()

    asyncio.run(scenario())


async def _audited(admin: Bus) -> None:
    """Key creation, alias moves and refused requests by known keys left audit records naming the key."""
    records = [parse_event(m.data) for m in await admin.history("fermion.audit.>")]
    actions = {r.data.action for r in records}  # type: ignore[attr-defined]
    assert {"key.created", "alias.moved", "request.refused"} <= actions, actions
    refused = [r for r in records if r.data.action == "request.refused"]  # type: ignore[attr-defined]
    assert all(r.data.principal != "local" and r.data.reason for r in refused)  # type: ignore[attr-defined]


def test_keys_from_the_cli(world: World) -> None:
    s = world.stack.settings
    env = {
        **os.environ,
        "FERMION_HOME": str(s.home),
        "FERMION_NATS_PORT": str(s.nats_port),
        "FERMION_INGEST_PORT": str(s.ingest_port),
        "FERMION_INFERENCE_PORT": str(s.inference_port),
        "COLUMNS": "200",
    }

    def fermion(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "fermion", *args], env=env, capture_output=True, text=True)

    made = fermion("keys", "create", "--tenant", "acme", "--scopes", "infer,read", "--expires", "1d", "--name", "ci")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]  # the key is the last line
    r = httpx.post(f"{world.inference}/v2/models/m/infer", json=ROW, headers=bearer(key))
    assert r.status_code == 200
    key_id = key.split("_")[1]
    listed = fermion("keys", "list", "--tenant", "acme")
    assert listed.returncode == 0 and f"fmn_{key_id}_" in listed.stdout and key not in listed.stdout
    assert fermion("keys", "revoke", key_id).returncode == 0
    bad = fermion("keys", "create", "--tenant", "acme", "--scopes", "infer", "--expires", "soon")
    assert bad.returncode == 1 and "--expires takes a number and a unit" in bad.stderr
    anonymous = subprocess.run(
        [sys.executable, "-m", "fermion", "keys", "list"],
        env={**env, "FERMION_API_KEY": key},  # a revoked, non-admin key
        capture_output=True,
        text=True,
    )
    assert anonymous.returncode == 1 and "401" in anonymous.stderr
