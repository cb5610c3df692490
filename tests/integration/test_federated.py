"""Federated rounds over a real nats-server: a coordinator and three participants, each its own process.

Three participants hold non-IID shards of scikit-learn's digits (each mostly three or four classes);
the coordinator holds the held-out set. Along the way one participant is frozen and SIGKILLed
mid-round, an update is replayed, a late update and updates from a non-participant and with a
wrong key are sent: the round still closes at its deadline, the replay is applied once, the
others are refused with their reasons, and no participant's rows ever reach the store.

The server enforces the roles' permissions (infra/identity.py): the coordinator runs as the
`federated` NATS user and ingest as `ingest`, so a grant the coordinator's code needs and its row
lacks fails this test. The participants (sites outside the platform, no role of their own) and the
test itself connect as the admin.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from fermion.events import Bus, BusSettings, ConsumerPolicy, DatasetRef, Recipe, subjects
from fermion.events.federation import (
    FederationCompleted,
    FederationFailed,
    RoundCompleted,
    RoundStarted,
    UpdateRefused,
    UpdateReport,
    UpdateSubmitted,
    update_message,
)
from fermion.events.schemas import parse_event
from fermion.infra import NatsServer
from fermion.infra.identity import LocalIdentity
from fermion.model_store import DatasetStore, PreconditionFailed, StoreSettings, open_registry
from fermion.model_store.signing import SigningKey
from tests.helpers import FunctionProcess, api_key, bearer, free_port, wait_until

pytestmark = pytest.mark.integration
SITES = {"site-a": [0, 1, 2, 3], "site-b": [4, 5, 6], "site-c": [7, 8, 9]}
RECIPE = Recipe(architecture="mlp", epochs=2, learning_rate=2e-3, batch_size=32, seed=0)


def _split() -> tuple[tuple[np.ndarray, np.ndarray], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """The coordinator's held-out 20% and three non-IID shards: 80% of a class to its home site, 10% to each other."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x, y = d.data.astype(np.float32), d.target
    rng = np.random.default_rng(0)
    hold: list[int] = []
    parts: dict[str, list[int]] = {s: [] for s in SITES}
    for c in range(10):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_hold = len(idx) // 5
        hold.extend(idx[:n_hold])
        rest = idx[n_hold:]
        home = next(s for s, classes in SITES.items() if c in classes)
        cut = int(len(rest) * 0.8)
        parts[home].extend(rest[:cut])
        others = [s for s in SITES if s != home]
        for i, j in enumerate(rest[cut:]):
            parts[others[i % 2]].append(j)
    shards = {s: (x[np.asarray(p)], y[np.asarray(p)]) for s, p in parts.items()}
    return (x[np.asarray(hold)], y[np.asarray(hold)]), shards


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Any]:
    """A store (the coordinator's side), three participant sites with their own keys and data, and env;
    nats-server with the roles' users, its streams provisioned by the admin."""
    home = tmp_path / "home"
    registry = open_registry(StoreSettings(home=home))
    identity = LocalIdentity(home).ensure(registry.store)
    with NatsServer(tmp_path / "nats", auth=identity.nats_config) as server:
        # The admin's step: the coordinator, as the `federated` user, only checks the consumer exists.
        asyncio.run(_provision(identity.bus_settings("admin", server.url), ConsumerPolicy(ack_wait_s=10)))
        yield _world(tmp_path, home, identity, server.url)


async def _provision(admin: BusSettings, policy: ConsumerPolicy) -> None:
    bus = await Bus.from_settings(admin, name="test-provision")
    try:
        await bus.provision(policy)
    finally:
        await bus.close()


def _world(tmp_path: Path, home: Path, identity: LocalIdentity, nats_url: str) -> dict[str, Any]:
    env = {
        **os.environ,
        "FERMION_HOME": str(home),
        "FERMION_NATS_URL": nats_url,
        "FERMION_STORE_URL": (home / "store").as_uri(),
        "FERMION_ACK_WAIT_S": "10",
        "PYTHONUNBUFFERED": "1",
        "OMP_NUM_THREADS": "1",  # four torch processes share two cores here
    }
    registry = open_registry(StoreSettings(home=home))
    (x_hold, y_hold), shards = _split()
    buf = io.BytesIO()
    np.savez(buf, x=x_hold, y=y_hold)
    stored = DatasetStore(registry.store).put("default", "digits-holdout", buf.getvalue(), "npz")
    holdout = DatasetRef(name="digits-holdout", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)
    sites: dict[str, dict[str, Any]] = {}
    for site, (x, y) in shards.items():
        folder = tmp_path / site  # the participant's own machine: nothing here is in the store
        folder.mkdir()
        key = SigningKey.generate()
        (folder / "key.pem").write_bytes(key.pem())
        np.savez(folder / "data.npz", x=x, y=y)
        site_env = {
            **env,
            **identity.env("admin"),
            "FERMION_PARTICIPANT_ID": site,
            "FERMION_PARTICIPANT_KEY": str(folder / "key.pem"),
            "FERMION_PARTICIPANT_DATA": str(folder / "data.npz"),
        }
        sites[site] = {"key": key, "env": site_env, "x": x, "y": y, "log": folder / "participant.log"}
    return {
        "home": home,
        "env": env,
        "identity": identity,
        "nats_url": nats_url,
        "registry": registry,
        "holdout": holdout,
        "sites": sites,
        "x_hold": x_hold,
        "y_hold": y_hold,
    }


def _ingest(world: Any) -> tuple[FunctionProcess, str]:
    """Ingest on the coordinator's store and bus, answering on a free loopback port."""
    port = free_port()
    args = ["uvicorn", "--host", "127.0.0.1", "--port", str(port), "fermion.functions.ingest.app:app"]
    env = {**world["env"], **world["identity"].env("ingest")}
    ingest = FunctionProcess(args, env, world["home"] / "ingest.log").start()
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: _answers(f"{url}/healthz"), 60, "ingest to answer")
    return ingest, url


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def _participant(site: dict[str, Any]) -> FunctionProcess:
    return FunctionProcess(["fermion.functions.federated.participant"], site["env"], site["log"]).start()


async def _forged(bus: Bus, fed: str, r: int, participant: str, key: SigningKey, note: str, store: Any) -> None:
    """An update that must be refused: weights at its content address, signed by `key`."""
    weights = store.get(f"federated/default/{fed}/rounds/{r}/global.npz")[0]
    sha = hashlib.sha256(weights).hexdigest()
    wkey = f"federated/default/{fed}/rounds/{r}/updates/{participant}/{sha}.npz"
    with contextlib.suppress(PreconditionFailed):  # already there from an earlier forgery of the same bytes
        store.put(wkey, weights, if_none_match=True)
    metrics = {"note": float(len(note))}
    await bus.publish(
        UpdateSubmitted(
            id=f"forged.{note}.{r}",
            data=UpdateReport(
                federation_id=fed,
                round=r,
                participant=participant,
                weights_key=wkey,
                weights_sha256=sha,
                n_examples=100_000,
                metrics=metrics,
                signature=key.sign(update_message(fed, r, participant, sha, 100_000, metrics)).hex(),
            ),
        )
    )


@pytest.mark.timeout(300)
async def test_three_non_iid_participants_reach_090_through_faults(world: Any) -> None:
    began = time.monotonic()
    sites = world["sites"]
    env = {**world["env"], **world["identity"].env("federated")}
    coordinator = FunctionProcess(["fermion.functions.federated"], env, world["home"] / "coordinator.log")
    coordinator.start()
    procs = {s: _participant(sites[s]) for s in sites}
    bus = await Bus.from_settings(world["identity"].bus_settings("admin", world["nats_url"]), name="test")
    # Started the way a user starts one (issue 25): POST /v1/federations on a real ingest, the held-out
    # set named, not addressed; the events below are only watched.
    ingest, url = _ingest(world)
    since = datetime.now(UTC) - timedelta(seconds=1)
    body = {
        "model_name": "digits-fed",
        "recipe": RECIPE.model_dump(mode="json"),
        "labels": [str(i) for i in range(10)],
        "n_features": 64,
        "rounds": 10,
        "participants": [{"id": s, "public_key": sites[s]["key"].public_key.hex()} for s in sites],
        "min_updates": 2,
        "round_deadline_s": 8.0,
        "holdout": {"name": world["holdout"].name},
    }
    key = bearer(api_key(world["registry"], "train", "read"))
    answer = httpx.post(f"{url}/v1/federations", json=body, headers=key, timeout=30)
    assert answer.status_code == 202, answer.text
    fed = answer.json()["federation_id"]
    store = world["registry"].store
    mallory = SigningKey.generate()
    completed: dict[int, RoundCompleted] = {}
    refused: list[UpdateRefused] = []
    replayed = False
    events = bus.watch("fermion.federated.>", since=since)
    try:
        async with asyncio.timeout(240):
            async for raw in events:
                event = parse_event(raw)
                if isinstance(event, RoundCompleted) and event.data.federation_id == fed:
                    completed[event.data.round] = event
                    if event.data.round == 2:  # freeze site-c between rounds, so it cannot answer round 3
                        procs["site-c"].proc.send_signal(signal.SIGSTOP)
                    if event.data.round == 3:  # round 3 closed without it: site-c comes back and catches up
                        procs["site-c"] = _participant(sites["site-c"])
                elif isinstance(event, RoundStarted) and event.data.federation_id == fed and event.data.round == 3:
                    procs["site-c"].proc.kill()  # SIGKILL, mid-round: the announcement reached it, frozen
                    procs["site-c"].proc.wait()
                    await _forged(bus, fed, 3, "mallory", mallory, "outsider", store)
                    await _forged(bus, fed, 3, "site-a", mallory, "wrongkey", store)
                    await _forged(bus, fed, 2, "site-a", sites["site-a"]["key"], "late", store)
                elif (
                    isinstance(event, UpdateSubmitted)
                    and event.data.federation_id == fed
                    and event.data.round == 3
                    and event.data.participant == "site-b"
                    and not replayed
                ):
                    replayed = True  # the same update again, past JetStream's de-duplication (a new msg id)
                    await bus.publish_bytes(subjects.FEDERATED_UPDATE_SUBMITTED, raw, msg_id="replay-of-b-3")
                elif isinstance(event, UpdateRefused) and event.data.federation_id == fed:
                    refused.append(event)
                elif isinstance(event, FederationCompleted) and event.data.federation_id == fed:
                    break
                elif isinstance(event, FederationFailed) and event.data.federation_id == fed:
                    pytest.fail(f"the federation failed: {event.data.reason}")
    finally:
        started = time.monotonic()
        await events.aclose()
        await bus.close()
        coordinator.stop()
        rounds = httpx.get(f"{url}/v1/federations/{fed}/rounds", headers=key, timeout=30)
        ingest.stop()
        for p in procs.values():
            p.stop()
        print(
            f"\nfederation done at {time.monotonic() - began:.1f}s; "
            f"stopping the processes {time.monotonic() - started:.1f}s"
        )

    registry = world["registry"]
    n = {s: len(sites[s]["y"]) for s in sites}
    table = []
    for r in range(1, 11):
        c = completed[r].data
        manifest = registry.manifest("default", "digits-fed", c.version)
        updates = manifest.lineage.federated["updates"]  # type: ignore[index]
        names = [u["participant"] for u in updates]
        assert len(names) == len(set(names)) and set(names) == set(c.participants)
        assert manifest.lineage.federated["n_examples"] == sum(n[p] for p in names)  # type: ignore[index]
        table.append((r, c.version, c.metrics["accuracy"], ",".join(sorted(names))))
    assert rounds.status_code == 200, rounds.text  # what the user reads back: every round, over HTTP
    assert len(rounds.json()) == 10, rounds.text
    assert set(completed[3].data.participants) == {"site-a", "site-b"}  # closed at the deadline, quorum 2
    assert any("site-c" in completed[r].data.participants for r in range(4, 11))  # it caught up after its restart
    assert replayed
    reasons = {e.data.participant + ":" + e.data.reason for e in refused}
    assert any(r.startswith("mallory:") and "not a participant" in r for r in reasons), reasons
    assert any(r.startswith("site-a:") and "does not verify" in r for r in reasons), reasons
    assert any(r.startswith("site-a:") and "late" in r for r in reasons), reasons
    best = max(acc for _, _, acc, _ in table)
    started = time.monotonic()
    central = _centralised(sites, world["x_hold"], world["y_hold"])
    print(f"\ncentralised training {time.monotonic() - started:.1f}s")
    print("\nround  version  held-out accuracy  participants")
    for r, v, acc, names in table:
        print(f"{r:>5}  {v:>7}  {acc:>17.4f}  {names}")
    print(f"centralised (union of the shards, {RECIPE.epochs * 10} epochs): {central:.4f}")
    assert best >= 0.9, table
    started = time.monotonic()
    _assert_no_raw_data_in_store(world["home"] / "store", sites, world["x_hold"])
    print(f"store scan {time.monotonic() - started:.1f}s")


def _centralised(sites: dict[str, Any], x_hold: np.ndarray, y_hold: np.ndarray) -> float:
    import torch

    from fermion.functions.federated.model import build_module, local_train

    x = np.concatenate([sites[s]["x"] for s in sites])
    y = np.concatenate([sites[s]["y"] for s in sites]).astype(np.int64)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # this process shares two loaded cores; a second thread only spins
    try:
        module = build_module(RECIPE.model_copy(update={"epochs": RECIPE.epochs * 10}), x, 10)
        local_train(module, x, y, RECIPE.model_copy(update={"epochs": RECIPE.epochs * 10}), proximal_mu=0.0, seed=0)
        with torch.no_grad():
            return float((module(torch.from_numpy(x_hold)).argmax(1).numpy() == y_hold).mean())
    finally:
        torch.set_num_threads(threads)


def _assert_no_raw_data_in_store(store: Path, sites: dict[str, Any], x_hold: np.ndarray) -> None:
    held = {r.tobytes() for r in x_hold}
    probes = []
    for s in sites.values():
        rows = [r for r in s["x"] if r.tobytes() not in held][:10]
        probes += [r.astype(np.float32).tobytes() for r in rows] + [r.astype(np.float64).tobytes() for r in rows]
        probes.append((Path(s["env"]["FERMION_PARTICIPANT_DATA"])).read_bytes()[:4096])
    files = [p for p in store.rglob("*") if p.is_file()]
    assert len(files) > 40
    for path in files:
        blob = path.read_bytes()
        for probe in probes:
            assert probe not in blob, f"a participant's raw data is in the store at {path.relative_to(store)}"


@pytest.mark.timeout(300)
async def test_a_federation_with_a_privacy_budget_stops_when_it_is_spent(world: Any) -> None:
    """ε = 8 at δ = 1e-5 with noise multiplier 2 (dp-accounting's RDP): two rounds fit, a third would not."""
    sites = world["sites"]
    env = {**world["env"], **world["identity"].env("federated")}
    coordinator = FunctionProcess(["fermion.functions.federated"], env, world["home"] / "coordinator.log").start()
    procs = [_participant(sites[s]) for s in sites]
    bus = await Bus.from_settings(world["identity"].bus_settings("admin", world["nats_url"]), name="test")
    ingest, url = _ingest(world)
    since = datetime.now(UTC) - timedelta(seconds=1)
    body = {
        "model_name": "digits-private",
        "recipe": RECIPE.model_dump(mode="json"),
        "labels": [str(i) for i in range(10)],
        "n_features": 64,
        "rounds": 10,
        "participants": [{"id": s, "public_key": sites[s]["key"].public_key.hex()} for s in sites],
        "min_updates": 3,
        "round_deadline_s": 60.0,
        "holdout": {"name": world["holdout"].name},
        "privacy": {"clip_norm": 1.0, "noise_multiplier": 2.0, "epsilon": 8.0, "delta": 1e-5},
    }
    key = bearer(api_key(world["registry"], "train", "read"))
    events = bus.watch("fermion.federated.>", since=since)
    try:
        answer = httpx.post(f"{url}/v1/federations", json=body, headers=key, timeout=30)
        assert answer.status_code == 202, answer.text
        fed = answer.json()["federation_id"]
        completed: dict[int, RoundCompleted] = {}
        async with asyncio.timeout(240):
            async for raw in events:
                event = parse_event(raw)
                if getattr(event.data, "federation_id", None) != fed:
                    continue
                if isinstance(event, RoundCompleted):
                    completed[event.data.round] = event
                elif isinstance(event, FederationCompleted):
                    done = event
                    break
                elif isinstance(event, FederationFailed):
                    pytest.fail(f"the federation failed: {event.data.reason}")
        rounds = httpx.get(f"{url}/v1/federations/{fed}/rounds", headers=key, timeout=30).json()
    finally:
        await events.aclose()
        await bus.close()
        coordinator.stop()
        ingest.stop()
        for p in procs:
            p.stop()
    assert sorted(completed) == [1, 2] and done.data.rounds == 2
    assert done.data.stopped is not None and "privacy budget spent: round 3" in done.data.stopped
    spent = [completed[r].data.privacy for r in (1, 2)]
    assert spent[0] is not None and spent[1] is not None
    assert 0 < spent[0]["epsilon_total"] < spent[1]["epsilon_total"] <= 8.0 < spent[1]["epsilon_after_next_round"]
    assert spent[0]["epsilon_round"] == spent[0]["epsilon_total"] and spent[1]["budget_allows_next_round"] is False
    assert [r["privacy"]["epsilon_total"] for r in rounds] == [s["epsilon_total"] for s in spent]  # over HTTP
    manifest = world["registry"].manifest("default", "digits-private", completed[2].data.version)
    lineage = manifest.lineage.federated["privacy"]  # type: ignore[index]
    assert lineage["epsilon_total"] == spent[1]["epsilon_total"] and lineage["noise_multiplier"] == 2.0
    assert "RDP" in lineage["accountant"]
    print(f"\nbudget ε=8, δ=1e-5, noise 2.0: rounds {sorted(completed)}, ε {[s['epsilon_total'] for s in spent]}")
