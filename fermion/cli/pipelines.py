"""`fermion pipelines ...`: rules that train on an upload or on drift, through a gate, over ingest's HTTP API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from fermion.client import Client, FermionError

from .console import Output, OutputOption, emit, say
from .names import model_name

pipelines_app = typer.Typer(
    help="Pipelines: an upload (or drift of the model) → train → gate → promote or canary.", no_args_is_help=True
)


class Trigger(StrEnum):
    upload = "upload"
    drift = "drift"


def _steps(canary: str | None) -> list[int]:
    """`10,50,100` → [10, 50, 100]; none or empty: no canary."""
    if not canary:
        return []
    try:
        return [int(s) for s in canary.split(",")]
    except ValueError as exc:
        raise FermionError(f"--canary must be comma-separated percentages, like 10,50,100; got {canary!r}") from exc


@pipelines_app.command("add")
def pipelines_add(
    name: Annotated[str, typer.Argument(help="rule name")],
    model: Annotated[str, typer.Option(help="model to train and register")],
    on: Annotated[Trigger, typer.Option(help="upload: a matching upload triggers it; drift: a drift alarm")] = (
        Trigger.upload
    ),
    dataset: Annotated[
        str | None,
        typer.Option(help="upload rules: dataset name or name prefix that triggers it; drift rules: the dataset"),
    ] = None,
    prefix: Annotated[
        str | None, typer.Option(help="drift rules: retrain on the newest upload whose name starts with this")
    ] = None,
    architecture: str = "mlp",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    label_column: Annotated[str, typer.Option(help="for CSV datasets")] = "label",
    alias: Annotated[str, typer.Option(help="alias the gate promotes to")] = "production",
    metric: Annotated[str, typer.Option(help="gate metric")] = "macro_f1",
    minimum: Annotated[float, typer.Option(help="gate: promote only at or above this")] = 0.0,
    not_worse: Annotated[bool, typer.Option(help="gate: never promote below the current version")] = True,
    canary: Annotated[
        str | None, typer.Option(help="gate: canary weight steps in percent, like 10,50,100 (default: swap)")
    ] = None,
    bake: Annotated[float, typer.Option(help="gate: seconds each canary step bakes")] = 300.0,
    output: OutputOption = Output.table,
) -> None:
    """Create or replace a pipeline rule (ingest checks it: a drift rule needs --dataset or --prefix)."""
    model = model_name(model)
    if on is Trigger.upload and prefix is not None:
        if dataset is not None and dataset != prefix:
            raise FermionError("an upload rule has one prefix: give --dataset or --prefix, not both")
        dataset, prefix = prefix, None
    recipe = {
        "architecture": architecture,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "label_column": label_column,
    }
    gate = {
        "alias": alias,
        "metric": metric,
        "minimum": minimum,
        "not_worse_than_current": not_worse,
        "canary": _steps(canary),
        "bake_s": bake,
    }
    rule: dict[str, Any] = {"on": on.value, "model_name": model, "recipe": recipe, "gate": gate}
    if on is Trigger.upload:
        rule["dataset_prefix"] = dataset
    else:
        rule |= {"dataset": dataset, "dataset_prefix": prefix}
    with Client.from_settings() as client:
        stored = client.put_pipeline(name, {k: v for k, v in rule.items() if v is not None})
    if output is not Output.table:
        return emit(stored, output)
    say(f"pipeline {name}: {_trigger(stored)} → {model} ({architecture}), {_gate(stored['gate'])}")
    return None


@pipelines_app.command("list")
def pipelines_list(output: OutputOption = Output.table) -> None:
    """Pipeline rules: trigger, model, recipe, gate and last firing."""
    with Client.from_settings() as client:
        rules = client.pipelines()
    emit(
        rules,
        output,
        ("rule", "trigger", "model", "recipe", "gate", "last fired"),
        lambda r: [r["name"], _trigger(r), r["model_name"], _recipe(r["recipe"]), _gate(r["gate"]), _fired(r)],
    )


@pipelines_app.command("delete")
def pipelines_delete(name: Annotated[str, typer.Argument(help="rule name")]) -> None:
    """Delete a pipeline rule."""
    with Client.from_settings() as client:
        client.delete_pipeline(name)
    say(f"pipeline {name} deleted")


def _trigger(rule: dict[str, Any]) -> str:
    if rule.get("on", "upload") == "upload":
        return f"upload of {rule['dataset_prefix']}*"
    retrains = rule.get("dataset") or f"newest {rule['dataset_prefix']}*"
    return f"drift of {rule['model_name']}, retrain on {retrains}"


def _recipe(recipe: dict[str, Any]) -> str:
    return f"{recipe.get('architecture', 'mlp')}, {recipe.get('epochs', '?')} epochs"


def _gate(gate: dict[str, Any] | None) -> str:
    if not gate:
        return "no gate"
    bar = f"{gate['metric']} ≥ {gate['minimum']:g}" + (" and not worse" if gate["not_worse_than_current"] else "")
    if gate.get("canary"):
        steps = ",".join(map(str, gate["canary"]))
        return f"{bar}: canary {steps}% on {gate['alias']}, bake {gate['bake_s']:g}s"
    return f"{bar}: promote to {gate['alias']}"


def _fired(rule: dict[str, Any]) -> str:
    fired = rule.get("last_fired")
    if not fired:
        return "never"
    at = f" {datetime.fromisoformat(fired['at']):%Y-%m-%d %H:%M:%S}" if fired.get("at") else ""
    version = f" → v{fired['version']}" if fired.get("version") is not None else ""
    return f"{fired['job_id']} {fired['state']}{version}{at}"
