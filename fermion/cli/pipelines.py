"""`fermion pipelines ...`: dataset-triggered pipelines."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.table import Table

from fermion.client import FermionError
from fermion.model_store import PipelineRule, Pipelines, StoreSettings, open_registry

from .console import console

pipelines_app = typer.Typer(help="Dataset-triggered pipelines: upload → train → promote.", no_args_is_help=True)


@pipelines_app.command("add")
def pipelines_add(
    name: Annotated[str, typer.Argument(help="rule name")],
    dataset: Annotated[str, typer.Option(help="dataset name or name prefix that triggers it")],
    model: Annotated[str, typer.Option(help="model to train and register")],
    architecture: str = "mlp",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    label_column: str = "label",
    alias: Annotated[str, typer.Option(help="alias the gate promotes to")] = "production",
    metric: Annotated[str, typer.Option(help="gate metric")] = "macro_f1",
    minimum: Annotated[float, typer.Option(help="gate: promote only at or above this")] = 0.0,
    not_worse: Annotated[bool, typer.Option(help="gate: never promote below the current version")] = True,
) -> None:
    """Create or replace a pipeline rule."""
    from fermion.events import Gate, Recipe

    settings = StoreSettings()
    try:
        recipe = Recipe(
            architecture=architecture, epochs=epochs, learning_rate=learning_rate, label_column=label_column
        )
        gate = Gate(alias=alias, metric=metric, minimum=minimum, not_worse_than_current=not_worse)
        rule = PipelineRule(
            name=name, dataset_prefix=dataset, model_name=model, recipe=recipe.model_dump(), gate=gate.model_dump()
        )
    except ValidationError as exc:
        raise FermionError(f"invalid pipeline rule: {exc}") from exc
    Pipelines(open_registry(settings).store).put(settings.tenant, rule)
    console.print(
        f"pipeline {name}: datasets {dataset}* → {model} ({architecture}), "
        f"promote to {alias} if {metric} ≥ {minimum}{' and not worse' if not_worse else ''}"
    )


@pipelines_app.command("list")
def pipelines_list() -> None:
    """Pipeline rules."""
    settings = StoreSettings()
    rules = Pipelines(open_registry(settings).store).list(settings.tenant)
    table = Table("rule", "datasets", "model", "recipe", "gate")
    for r in rules:
        table.add_row(r.name, f"{r.dataset_prefix}*", r.model_name, json.dumps(r.recipe), json.dumps(r.gate))
    console.print(table)


@pipelines_app.command("remove")
def pipelines_remove(name: Annotated[str, typer.Argument(help="rule name")]) -> None:
    """Remove a pipeline rule."""
    settings = StoreSettings()
    Pipelines(open_registry(settings).store).remove(settings.tenant, name)
    console.print(f"pipeline {name} removed")
