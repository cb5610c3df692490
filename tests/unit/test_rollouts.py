"""Weighted aliases: records, compare-and-swap moves, and per-request routing in the inference app."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from fermion.functions.inference.app import create_app
from fermion.functions.inference.routing import ROUTING_KEY, VERSION_HEADER, Split
from fermion.functions.inference.runtime import ModelRef, ModelRuntime
from fermion.functions.inference.settings import InferenceSettings
from fermion.model_store import Alias, AliasConflict, Registry, RolloutInProgress, Rollouts
from tests.helpers import api_key, bearer, linear_draft, linear_onnx

TTL_S = 0.5


@pytest.fixture
def split_alias(registry: Registry, tmp_path: Path) -> Iterator[tuple[TestClient, Rollouts]]:
    """Versions 1 and 2 of `lin`, `production` at 90/10, served with a short alias TTL."""
    for seed in (1, 2):
        registry.register("default", "lin", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    registry.set_alias("default", "lin", "production", 1)
    rollouts = Rollouts(registry)
    rollouts.start("default", "lin", "production", 2, steps=[10, 50, 100], automatic=False)
    settings = InferenceSettings(
        home=tmp_path, providers=["CPUExecutionProvider"], default_alias="production", alias_ttl_s=TTL_S
    )
    runtime = ModelRuntime(registry, settings)
    headers = bearer(api_key(registry, "infer"))
    with TestClient(create_app(lambda: runtime, lambda: settings), headers=headers) as client:
        yield client, rollouts


BODY = {"id": "q", "inputs": [{"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [0.1, 0.2, 0.3, 0.4]}]}


def _version(client: TestClient, key: str | None = None) -> int:
    r = client.post("/v2/models/lin/infer", json=BODY, headers={ROUTING_KEY: key} if key else {})
    assert r.status_code == 200, r.text
    assert r.headers[VERSION_HEADER] == r.json()["model_version"]
    return int(r.json()["model_version"])


def test_a_90_10_split_sends_10_percent_to_the_canary(split_alias) -> None:
    client, _ = split_alias
    random.seed(17)  # requests without a routing key are split at random
    by_random = Counter(_version(client) for _ in range(2000))
    by_key = Counter(_version(client, f"user-{i}") for i in range(2000))
    for counts in (by_random, by_key):
        share = counts[2] / 2000
        assert set(counts) == {1, 2} and abs(share - 0.10) <= 0.03, counts


def test_the_same_routing_key_always_reaches_the_same_version(split_alias) -> None:
    client, _ = split_alias
    seen = {key: {_version(client, key) for _ in range(20)} for key in (f"k{i}" for i in range(30))}
    assert all(len(versions) == 1 for versions in seen.values()), seen
    assert {v for versions in seen.values() for v in versions} == {1, 2}  # and keys do spread


def test_a_weight_change_reaches_a_warm_function_within_the_ttl(split_alias) -> None:
    client, rollouts = split_alias
    split = Split.of({1: 50, 2: 50}, None, 0.0)
    before = Split.of({1: 90, 2: 10}, None, 0.0)
    key = next(k for k in (f"u{i}" for i in range(1000)) if before.choose(k) == 1 and split.choose(k) == 2)
    assert _version(client, key) == 1  # warm, with the 90/10 split cached
    rollouts.step("default", "lin", "production")  # 10% → 50%
    moved_at = time.monotonic()
    while _version(client, key) == 1:
        assert time.monotonic() - moved_at < TTL_S + 1.0, "the new weights never reached the warm function"
    assert time.monotonic() - moved_at <= TTL_S + 1.0


def test_a_canarys_users_stay_on_it_as_its_weight_grows() -> None:
    small, large = Split.of({1: 90, 2: 10}, None, 0), Split.of({1: 50, 2: 50}, None, 0)
    keys = [f"user-{i}" for i in range(500)]
    assert all(large.choose(k) == 2 for k in keys if small.choose(k) == 2)


def test_rollout_moves_are_logged_and_rolled_back(registry: Registry) -> None:
    for seed in (1, 2, 3):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    registry.set_alias("default", "m", "production", 1)
    rollouts = Rollouts(registry)
    assert rollouts.start("default", "m", "production", 2).split() == {1: 90, 2: 10}
    with pytest.raises(AliasConflict, match="already rolling out version 2"):
        rollouts.start("default", "m", "production", 3)
    with pytest.raises(AliasConflict, match="moved to step 0"):
        rollouts.step("default", "m", "production", expected_step=1)
    assert rollouts.step("default", "m", "production").split() == {1: 50, 2: 50}
    # Issue 27: a person's rollback or promote never ends a running rollout silently.
    with pytest.raises(RolloutInProgress, match=r"m@production is rolling out version 2 over version 1 \(v1 50%"):
        registry.rollback("default", "m", "production")
    with pytest.raises(RolloutInProgress, match="promoting version 3 would end it"):
        registry.set_alias("default", "m", "production", 3)
    assert registry.alias("default", "m", "production").split() == {1: 50, 2: 50}
    # Told to abort it, a rollback sends the traffic back to the incumbent alone.
    assert registry.rollback("default", "m", "production", abort_rollout=True) == (2, 1)
    record = registry.alias("default", "m", "production")
    assert (record.split(), record.rollout, record.history) == ({1: 100}, None, [])
    assert [c.reason for c in record.changes] == ["canary at 10%", "canary at 50%", "rolled back"]
    rollouts.start("default", "m", "production", 2)
    finished = rollouts.finish("default", "m", "production")
    assert (finished.version, finished.weights, finished.history) == (2, {}, [1])
    assert registry.rollback("default", "m", "production") == (2, 1)


def test_old_and_new_alias_records_read_each_other(registry: Registry) -> None:
    old = {"version": 3, "updated_at": "2026-11-01T00:00:00Z", "history": [1, 2]}
    assert Alias.model_validate_json(json.dumps(old)).split() == {3: 100}

    class OldAlias(BaseModel):  # a reader that predates weights serves the incumbent, never the canary
        version: int
        history: list[int] = []

    for seed in (1, 2):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    registry.set_alias("default", "m", "production", 1)
    Rollouts(registry).start("default", "m", "production", 2)
    raw, _ = registry.store.get("models/default/m/aliases/production.json")
    assert OldAlias.model_validate_json(raw).version == 1
    assert registry.describe("default", "m")["aliases"]["production"] == 1
    assert registry.describe("default", "m")["splits"]["production"] == {1: 90, 2: 10}


def test_a_listing_survives_an_alias_record_it_cannot_validate(registry: Registry) -> None:
    """One hand-written or damaged alias record costs its own row at most, never the model's listing."""
    for seed in (1, 2):
        registry.register("default", "m", {"model.onnx": linear_onnx(seed=seed)}, linear_draft())
    aliases = "models/default/m/aliases/"
    registry.store.put(aliases + "handmade.json", b'{"version": 2}')  # no updated_at: not a valid record
    registry.store.put(aliases + "garbage.json", b"not json")
    listed = registry.describe("default", "m")
    assert listed["aliases"] == {"latest": 2, "production": 1, "handmade": 2}  # garbage is left out
    assert listed["splits"] == {"latest": {2: 100}, "production": {1: 100}, "handmade": {2: 100}}


def test_shadow_answers_are_compared_and_never_returned(split_alias, registry: Registry) -> None:
    client, rollouts = split_alias
    rollouts.abort("default", "lin", "production")
    rollouts.set_shadow("default", "lin", "production", 2)
    mirror = client.app.state.services.traffic.mirror
    deadline = time.monotonic() + TTL_S + 10
    while mirror.done < 10:  # the shadow is picked up within the TTL, then answers copies as it can
        assert _version(client) == 1
        assert time.monotonic() < deadline, f"the shadow compared {mirror.done} copies"
    x = np.ones((1, 4), np.float32).tolist()
    r = client.post("/v1/models/lin:predict", json={"instances": x})
    assert r.status_code == 200 and r.json()["model_version"] == "1" and r.headers[VERSION_HEADER] == "1"
    assert mirror._queue.qsize() <= 64  # a shadow slower than the traffic drops copies (counted); never unbounded


def test_a_shadow_runs_its_own_tenants_version(split_alias, registry: Registry) -> None:
    """Issue 25: the shadow was looked up without the tenant, so another tenant's same-named model ran."""
    client, _ = split_alias
    for _ in (1, 2):  # acme's v1 and v2 answer alike; the default tenant's v2 (seed 2) does not
        registry.register("acme", "lin", {"model.onnx": linear_onnx(seed=3)}, linear_draft())
    mirror = client.app.state.services.traffic.mirror
    runtime = mirror._runtime()
    primary = runtime.get(ModelRef("lin", None, 1), "acme")
    runtime.get(ModelRef("lin", None, 2), "default", primary.variant)  # the other tenant's v2, warm here too
    feeds = {"input": np.ones((2, 4), np.float32)}
    answers = primary.run(feeds, None)
    _, agreed = mirror._compare(("acme", "lin", "production", 1, 2), primary.variant, feeds, answers)
    assert agreed, "the shadow ran another tenant's version 2"
