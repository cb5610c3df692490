"""`fermion pipelines ...`: dataset-triggered pipelines, through ingest."""

from __future__ import annotations

from typing import Annotated

import typer

from fermion.client import Client

from .console import Output, OutputOption, emit, say
from .names import model_name

pipelines_app = typer.Typer(help="Dataset-triggered pipelines: upload → train → promote.", no_args_is_help=True)


@pipelines_app.command("add")
def pipelines_add(
    name: Annotated[str, typer.Argument(help="rule name")],
    dataset: Annotated[str, typer.Option(help="dataset name or name prefix that triggers it")],
    model: Annotated[str, typer.Option(help="model to train and register")],
    architecture: str = "mlp",
    epochs: int = 20,
    learning_rate: float = 1e-3,
    label_column: Annotated[str, typer.Option(help="for CSV datasets")] = "label",
    alias: Annotated[str, typer.Option(help="alias the gate promotes to")] = "production",
    metric: Annotated[str, typer.Option(help="gate metric")] = "macro_f1",
    minimum: Annotated[float, typer.Option(help="gate: promote only at or above this")] = 0.0,
    not_worse: Annotated[bool, typer.Option(help="gate: never promote below the current version")] = True,
) -> None:
    """Create or replace a pipeline rule."""
    model = model_name(model)
    recipe = {"architecture": architecture, "epochs": epochs, "learning_rate": learning_rate}
    rule = {
        "dataset_prefix": dataset,
        "model_name": model,
        "recipe": {**recipe, "label_column": label_column},
        "gate": {"alias": alias, "metric": metric, "minimum": minimum, "not_worse_than_current": not_worse},
    }
    Client.from_settings().put_pipeline(name, rule)
    say(
        f"pipeline {name}: datasets {dataset}* → {model} ({architecture}), "
        f"promote to {alias} if {metric} ≥ {minimum}{' and not worse' if not_worse else ''}"
    )


@pipelines_app.command("list")
def pipelines_list(output: OutputOption = Output.table) -> None:
    """Pipeline rules."""
    emit(
        Client.from_settings().pipelines(),
        output,
        ("rule", "datasets", "model", "recipe", "gate"),
        lambda r: [r["name"], f"{r['dataset_prefix']}*", r["model_name"], r["recipe"], r["gate"]],
    )


@pipelines_app.command("delete")
def pipelines_delete(name: Annotated[str, typer.Argument(help="rule name")]) -> None:
    """Delete a pipeline rule."""
    Client.from_settings().delete_pipeline(name)
    say(f"pipeline {name} deleted")
