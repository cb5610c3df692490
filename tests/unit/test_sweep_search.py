"""A sweep's Optuna study with the real optuna: asked from a space, pruned by the median, rebuilt from the store."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from pydantic import ValidationError

from fermion.cli.work import sweep_grid
from fermion.client import FermionError
from fermion.events import DatasetRef, ParamSpec, Recipe, SweepRequest
from fermion.functions.trainer.search import Search
from fermion.model_store import LocalDirStore, SweepRecord, Sweeps

REF = DatasetRef(name="wine", sha256="0" * 64, uri="file:///s/datasets/default/wine", format="csv", size=1)


def _request(**kw: object) -> SweepRequest:
    space = {"learning_rate": ParamSpec.parse("loguniform:1e-4:1e-1"), "epochs": ParamSpec.parse("int:5:30")}
    fields = {"search": "tpe", "n_trials": 8, "space": space, **kw}
    return SweepRequest(model_name="wine", dataset=REF, **fields)  # type: ignore[arg-type]


def _record(request: SweepRequest, sweep_id: str = "sweep-1") -> SweepRecord:
    return SweepRecord(
        sweep_id=sweep_id, tenant="default", model_name="wine", search=request.search, metric="macro_f1",
        n_trials=request.size,
    )  # fmt: skip


def _run(search: Search, job: str, values: list[float], end: str | None = "complete") -> bool:
    """Report one value per epoch; end the trial unless `end` is None; whether the pruner said stop."""
    pruned = False
    for epoch, v in enumerate(values, start=1):
        pruned = search.report(job, epoch, {"macro_f1": v}) or pruned
    if end is not None:
        search.finish(job, end, values[-1] if end == "complete" else None)
    return pruned


def test_param_specs_parse_and_refuse_nonsense() -> None:
    assert ParamSpec.parse("int:5:30").model_dump(exclude_defaults=True) == {"kind": "int", "low": 5, "high": 30}
    assert ParamSpec.parse("choice:mlp,cnn,3").choices == ["mlp", "cnn", 3]
    for bad in ("normal:0:1", "loguniform:0:1", "uniform:2:1", "choice:", "int:5"):
        with pytest.raises(ValueError):
            ParamSpec.parse(bad)
    with pytest.raises(ValidationError, match="cannot search"):
        _request(space={"label_column": ParamSpec.parse("choice:a,b")})
    with pytest.raises(ValidationError, match="needs a space"):
        _request(space={})
    with pytest.raises(ValidationError, match="greater than or equal to 1"):  # epochs 0 is no recipe
        _request(space={"epochs": ParamSpec.parse("int:0:5")})
    with pytest.raises(ValidationError, match="needs its trials"):
        SweepRequest(model_name="wine", dataset=REF)


def test_a_search_asks_recipes_from_its_space_over_the_base() -> None:
    request = _request(base=Recipe(batch_size=16, label_column="target"))
    search = Search(request, _record(request))
    trial = search.ask("sweep-1.0")
    assert 1e-4 <= trial.params["learning_rate"] <= 1e-1 and 5 <= trial.params["epochs"] <= 30
    recipe = Recipe.model_validate(trial.recipe)
    assert (recipe.batch_size, recipe.label_column) == (16, "target")
    assert recipe.learning_rate == trial.params["learning_rate"]
    assert search.running == ["sweep-1.0"]


def test_a_trial_behind_the_median_is_pruned_and_recorded_so() -> None:
    request = _request()
    search = Search(request, _record(request))
    for i in range(2):  # the pruner's start-up trials: never pruned
        search.ask(f"sweep-1.{i}")
        assert not _run(search, f"sweep-1.{i}", [0.6, 0.8, 0.9, 0.95, 0.97])
    search.ask("sweep-1.2")
    assert _run(search, "sweep-1.2", [0.2, 0.2, 0.25], end=None)  # far below the median at epoch 2 and 3
    search.finish("sweep-1.2", "pruned", reason="pruned by the sweep")
    trial = search.record.trial("sweep-1.2")
    assert trial is not None and trial.state == "pruned" and trial.intermediate == {1: 0.2, 2: 0.2, 3: 0.25}
    states = [t.state for t in search.study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE] * 2 + [optuna.trial.TrialState.PRUNED]
    search.ask("sweep-1.3")
    assert not _run(search, "sweep-1.3", [0.7, 0.85, 0.92], end=None)  # at the median: goes on
    with_prune_off = Search(_request(prune=False), _record(request))
    assert with_prune_off.request.prune is False


def test_a_restarted_sweep_rebuilds_its_study_from_the_store(tmp_path: Path) -> None:
    sweeps = Sweeps(LocalDirStore(tmp_path / "store"))
    request = _request()
    first = Search(request, _record(request))
    for i, values in enumerate([[0.5, 0.9, 0.93], [0.4, 0.8, 0.88]]):
        first.ask(f"sweep-1.{i}")
        _run(first, f"sweep-1.{i}", values)
    first.ask("sweep-1.2")
    _run(first, "sweep-1.2", [0.1, 0.1, 0.1], end="pruned")
    running = first.ask("sweep-1.3")
    first.report("sweep-1.3", 1, {"macro_f1": 0.7})
    sweeps.put(first.record)  # the trainer holding the sweep dies here

    record = sweeps.find("default", "wine", "sweep-1")
    assert record is not None
    again = Search(request, record)
    trials = again.study.get_trials()
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE", "PRUNED", "RUNNING"]
    assert [t.value for t in trials[:2]] == [0.93, 0.88]
    assert trials[0].params == first.record.trials[0].params  # the sampler sees what was tried
    assert trials[3].params == running.params and trials[3].intermediate_values == {1: 0.7}
    assert again.running == ["sweep-1.3"] and again.asked == 4  # asks for no trial twice
    assert not again.report("sweep-1.3", 1, {"macro_f1": 0.1})  # a replayed epoch is not taken twice
    again.finish("sweep-1.3", "complete", 0.95)
    assert again.ask("sweep-1.4").index == 4
    best = again.best()
    assert best is not None and (best.job_id, best.value) == ("sweep-1.3", 0.95)
    assert len(again.study.get_trials(states=(optuna.trial.TrialState.COMPLETE,))) == 3


def test_the_cli_grid_keeps_epochs_and_rates_and_multiplies_choices() -> None:
    grid = sweep_grid({"architecture": "mlp"}, "5,20", "0.001,0.01", {})
    assert [(t["epochs"], t["learning_rate"]) for t in grid] == [(5, 0.001), (5, 0.01), (20, 0.001), (20, 0.01)]
    space = {"architecture": {"kind": "choice", "choices": ["mlp", "cnn"]}}
    assert len(sweep_grid({}, "5", "0.01", space)) == 2
    with pytest.raises(FermionError, match="grid takes choice"):
        sweep_grid({}, "5", "0.01", {"epochs": {"kind": "int", "low": 1, "high": 3}})
