"""Sweeps on a real trainer process and nats-server, with the real optuna: TPE against the grid on
wine, a pruned trial, and a sweep that survives its trainer's restart. Trials are runs; each sweep
registers exactly one version, its winner."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_wine

from fermion.events import Bus, ConsumerPolicy, DatasetRef, Gate, ParamSpec, Recipe, SweepRequest, TrainingSweep
from fermion.infra import NatsServer
from fermion.model_store import (
    DatasetStore,
    Registry,
    RunRecord,
    Runs,
    StoreSettings,
    SweepRecord,
    Sweeps,
    generate_key_pair,
    open_registry,
)
from tests.helpers import Trainer
from tests.helpers.waiting import wait_until

pytestmark = pytest.mark.integration


def _registry(env: dict[str, str]) -> Registry:
    return open_registry(StoreSettings(home=Path(env["FERMION_HOME"]), store_url=env["FERMION_STORE_URL"]))


def _wine_csv(registry: Registry) -> DatasetRef:
    wine = load_wine()  # 13 features, 3 cultivars, 178 rows
    rows = [",".join([*wine.feature_names, "target"])]
    rows += [",".join([*(repr(float(v)) for v in x), str(int(y))]) for x, y in zip(wine.data, wine.target, strict=True)]
    stored = DatasetStore(registry.store).put("default", "wine", "\n".join(rows).encode() + b"\n", "csv")
    return DatasetRef(name="wine", sha256=stored.sha256, uri=stored.uri, format="csv", size=stored.size)


def _blobs(registry: Registry, n: int = 4000) -> DatasetRef:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, n)
    x = (rng.normal(size=(n, 8)) + y[:, None] * 1.2).astype(np.float32)
    buf = io.BytesIO()
    np.savez(buf, x=x, y=y)
    stored = DatasetStore(registry.store).put("default", "blobs4k", buf.getvalue(), "npz")
    return DatasetRef(name="blobs4k", sha256=stored.sha256, uri=stored.uri, format="npz", size=stored.size)


async def _finished(registry: Registry, model: str, sweep_id: str, timeout_s: float) -> SweepRecord:
    sweeps = Sweeps(registry.store)
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        record = await asyncio.to_thread(sweeps.find, "default", model, sweep_id)
        if record is not None and record.status != "running":
            return record
        await asyncio.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} did not finish in {timeout_s:.0f}s: {record}")


async def test_tpe_on_wine_registers_one_version_at_least_as_good_as_the_grid(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    registry = _registry(stack_env)
    ref = _wine_csv(registry)
    base = Recipe(label_column="target")
    grid = [base.model_copy(update={"epochs": e, "learning_rate": lr}) for e in (5, 20) for lr in (1e-3, 1e-2)]
    gate = Gate(alias="production", metric="macro_f1", minimum=0.5)
    results: dict[str, SweepRecord] = {}
    for model, request in {
        "wine-grid": SweepRequest(model_name="wine-grid", dataset=ref, trials=grid, gate=gate),
        "wine-tpe": SweepRequest(
            model_name="wine-tpe",
            dataset=ref,
            search="tpe",
            n_trials=8,
            base=base,
            gate=gate,
            parallel=2,
            space={"learning_rate": ParamSpec.parse("loguniform:1e-4:1e-1"), "epochs": ParamSpec.parse("int:5:20")},
        ),
    }.items():
        sweep = TrainingSweep(tenant="default", data=request)
        await bus.publish(sweep)
        results[model] = await _finished(registry, model, sweep.id, timeout_s=400)
    for model, record in results.items():
        assert record.status == "completed", record.error
        assert record.winner is not None and record.winner.promoted, record.winner
        assert registry.versions("default", model) == [1]  # trials are runs: one version, the winner's
        assert len(record.trials) == (4 if model == "wine-grid" else 8)
        assert record.winner.metrics["macro_f1"] == pytest.approx(record.winner.value)  # retrained, same seed
        runs = Runs(registry.store).list("default", model)
        assert len(runs) == len(record.trials) + 1 and sum(r.version is not None for r in runs) == 1
    tpe, grid_best = results["wine-tpe"].winner, results["wine-grid"].winner
    assert tpe is not None and grid_best is not None
    print(f"\nwine macro_f1: TPE (8 trials) {tpe.value:.4f} {tpe.params}; grid (4) {grid_best.value:.4f}")
    assert tpe.value >= grid_best.value


async def test_a_trial_behind_the_median_is_pruned_and_its_run_says_so(
    bus: Bus, trainer: Trainer, stack_env: dict[str, str]
) -> None:
    registry = _registry(stack_env)
    ref = _blobs(registry)
    good = Recipe(epochs=6, learning_rate=1e-2)
    bad = Recipe(epochs=300, learning_rate=1e-7)  # learns nothing; long enough for the cancel to land
    request = SweepRequest(model_name="pruned", dataset=ref, trials=[good, good, bad], parallel=1, metric="accuracy")
    sweep = TrainingSweep(tenant="default", data=request)
    await bus.publish(sweep)
    record = await _finished(registry, "pruned", sweep.id, timeout_s=300)
    assert [t.state for t in record.trials] == ["complete", "complete", "pruned"]
    pruned = record.trials[2]
    assert 2 <= len(pruned.intermediate) < 300
    run: RunRecord = Runs(registry.store).get("default", pruned.job_id, "pruned")
    assert run.status == "pruned" and run.version is None
    assert registry.versions("default", "pruned") == [1]


async def test_a_sweep_survives_its_trainer_restarting(stack_env: dict[str, str], tmp_path: Path) -> None:
    """On a NATS and store of its own: no other trainer of the session may take the sweep over."""
    home = tmp_path / "home"
    generate_key_pair(home / "keys")
    with NatsServer(tmp_path / "nats") as nats:
        env = {
            **stack_env, "FERMION_NATS_URL": nats.url, "FERMION_HOME": str(home),
            "FERMION_STORE_URL": (home / "store").as_uri(), "FERMION_ACK_WAIT_S": "4",
        }  # fmt: skip
        bus = await Bus.connect(nats.url)
        try:
            await bus.provision(ConsumerPolicy(ack_wait_s=4, max_deliver=3))
            await _restart_mid_sweep(bus, env, tmp_path)
        finally:
            await bus.close()


async def _restart_mid_sweep(bus: Bus, env: dict[str, str], tmp_path: Path) -> None:
    registry = _registry(env)
    ref = _blobs(registry)
    trials = [Recipe(epochs=3, learning_rate=1e-2, seed=s) for s in range(4)]
    request = SweepRequest(model_name="restarted", dataset=ref, trials=trials, parallel=1, prune=False)
    sweep = TrainingSweep(tenant="default", data=request)
    sweeps = Sweeps(registry.store)

    def two_done() -> bool:
        found = sweeps.find("default", "restarted", sweep.id)
        return found is not None and sum(t.state == "complete" for t in found.trials) >= 2

    first = Trainer(env, tmp_path / "first.log").start().wait_ready()
    try:
        await bus.publish(sweep)
        await asyncio.to_thread(wait_until, two_done, 240, "two trials done")
    finally:
        assert first.proc is not None
        first.proc.kill()  # no goodbye: the sweep message (and a trial's) is redelivered
        first.proc.wait()
    second = Trainer(env, tmp_path / "second.log").start().wait_ready()
    try:
        record = await _finished(registry, "restarted", sweep.id, timeout_s=300)
    finally:
        second.stop()
    assert record.status == "completed", record.error
    assert [t.job_id for t in record.trials] == [f"{sweep.id}.{i}" for i in range(4)]  # none asked twice
    assert registry.versions("default", "restarted") == [1]
    assert "resumed with" in second.text()
