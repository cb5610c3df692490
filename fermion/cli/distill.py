"""`fermion distill`: a small student trained on a registered version's soft targets (knowledge distillation)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fermion.client import Client

from .console import Output, OutputOption, emit, say
from .follow import follow_job
from .names import model_name


def distill(
    model: Annotated[str, typer.Argument(help="model name to register the student under")],
    teacher: Annotated[str, typer.Option(help="NAME (its latest), NAME@ALIAS or NAME:VERSION: any registered version")],
    dataset: Annotated[str, typer.Option(help="name of an uploaded dataset the teacher's inputs match")],
    architecture: Annotated[str, typer.Option(help="the student's architecture (see `fermion train --list`)")] = "mlp",
    hidden: Annotated[int | None, typer.Option(help="the student's width (mlp: units; cnn: channels)")] = None,
    temperature: Annotated[float, typer.Option(help="softens both sides' answers; higher shares more")] = 4.0,
    alpha: Annotated[float, typer.Option(help="the soft targets' share of the loss (0: labels only)")] = 0.7,
    epochs: int = 20,
    learning_rate: float = 1e-3,
    batch_size: int = 64,
    seed: int = 0,
    label_column: Annotated[str | None, typer.Option(help="as for train")] = None,
    sha256: Annotated[str | None, typer.Option(help="which upload, if the name has several")] = None,
    follow: Annotated[bool, typer.Option(help="show progress until the job ends")] = False,
    output: OutputOption = Output.table,
) -> None:
    """Train a student on a teacher's soft targets and the labels; register it like any version."""
    model = model_name(model)
    recipe: dict[str, Any] = {
        "architecture": architecture,
        "hidden": hidden,
        "epochs": epochs,
        "learning_rate": learning_rate,
        "batch_size": batch_size,
        "seed": seed,
        "label_column": label_column,
        "distill": {"teacher": teacher, "temperature": temperature, "alpha": alpha},
    }
    with Client.from_settings() as client:
        out = client.request_training(model, dataset, sha256=sha256, **recipe)
        if output is not Output.table:
            emit(out, output)
        else:
            say(f"job {out['job_id']} ({model} on {out['dataset']['name']}, taught by {teacher})")
        if follow:
            _follow(client, model, out["job_id"], epochs)


def _follow(client: Client, model: str, job: str, epochs: int) -> None:
    """Progress until the job ends, then the student beside its teacher."""
    result = follow_job(client, job, epochs)
    assert result.data.version is not None  # only a sweep's trial completes without a version
    side = client.manifest(model, result.data.version).get("distillation") or {}
    t, s = side.get("teacher", {}), side.get("student", {})
    say(
        f"{model} version {result.data.version}: {result.data.metrics}; "
        f"teacher {t.get('name')}:{t.get('version')} {t.get('metrics')}, "
        f"{s.get('parameters')} parameters against {t.get('parameters')}"
    )
