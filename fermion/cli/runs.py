"""`fermion runs ...`: training run history, from the ingest function's `/v1/runs` routes."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import typer
from rich.table import Table

from fermion.client import Client, FermionError

from .console import console

runs_app = typer.Typer(help="Training run history: parameters, per-epoch curves, final metrics, lineage.")


def _metric(run: dict[str, Any], name: str) -> str:
    value = run["metrics"].get(name)
    return f"{value:.4f}" if value is not None else "-"


@runs_app.command("list")
def runs_list(
    model: Annotated[str | None, typer.Option(help="only this model's runs")] = None,
    limit: Annotated[int, typer.Option(min=1, help="at most this many, newest first")] = 50,
) -> None:
    """A tenant's runs, newest first."""
    with Client.from_settings() as client:
        runs = client.runs(model, limit)
    table = Table("job", "model", "status", "started", "epochs", "version", "accuracy", "macro-F1")
    for r in runs:
        table.add_row(
            r["job_id"],
            r["model_name"],
            r["status"],
            datetime.fromisoformat(r["started"]).strftime("%Y-%m-%d %H:%M:%S"),
            str(r["epochs_done"]),
            str(r["version"] or "-"),
            _metric(r, "accuracy"),
            _metric(r, "macro_f1"),
        )
    console.print(table)


@runs_app.command("show")
def runs_show(job: Annotated[str, typer.Argument(help="the job id")]) -> None:
    """One run: parameters, every epoch, final metrics, lineage (or the error)."""
    with Client.from_settings() as client:
        r = client.run(job)
    console.print(f"[bold]{r['job_id']}[/bold]  {r['model_name']}  {r['status']}  version {r['version'] or '-'}")
    console.print(f"parameters: {r['parameters']}")
    console.print(f"dataset: {r['dataset'].get('name')} {str(r['dataset'].get('sha256', ''))[:16]}")
    names = sorted({k for e in r["epochs"] for k in e["metrics"]})
    table = Table("epoch", "loss", *names, "seconds")
    for e in r["epochs"]:
        table.add_row(
            str(e["epoch"]),
            f"{e['loss']:.4f}" if e.get("loss") is not None else "-",
            *(f"{e['metrics'][n]:.4f}" if n in e["metrics"] else "-" for n in names),
            f"{e['seconds']:.2f}" if e.get("seconds") is not None else "-",
        )
    console.print(table)
    if r["metrics"]:
        console.print(f"final metrics: {r['metrics']}")
    if r["lineage"]:
        console.print(f"lineage: {r['lineage']}")
    if r["error"]:
        console.print(f"[red]error:[/red] {r['error']}")


@runs_app.command("compare")
def runs_compare(jobs: Annotated[list[str], typer.Argument(help="two or more job ids")]) -> None:
    """Runs side by side: the parameters that differ, final metrics, and the last epoch's loss."""
    if len(jobs) < 2:
        raise FermionError("give two or more job ids to compare")
    with Client.from_settings() as client:
        compared = client.compare_runs(jobs)
    records = compared["runs"]
    table = Table("", *(r["job_id"] for r in records))
    for k in compared["differing_parameters"]:
        table.add_row(f"[yellow]{k}[/yellow]", *(repr(r["parameters"].get(k)) for r in records))
    for name in sorted({k for r in records for k in r["metrics"]}):
        table.add_row(name, *(_metric(r, name) for r in records))
    table.add_row("final loss", *(_final_loss(r) for r in records))
    table.add_row("status", *(r["status"] for r in records))
    console.print(table)


def _final_loss(run: dict[str, Any]) -> str:
    last = run["epochs"][-1] if run["epochs"] else {}
    return f"{last['loss']:.4f}" if last.get("loss") else "-"


@runs_app.command("export")
def runs_export(
    mlflow: Annotated[str, typer.Option("--mlflow", help="the MLflow tracking server's URI (http://HOST:PORT)")],
    run: Annotated[str | None, typer.Option("--run", help="the job id of the run to export")] = None,
    model: Annotated[str | None, typer.Option("--model", help="NAME or NAME:VERSION: its version's run")] = None,
) -> None:
    """Log a run into MLflow: parameters, per-epoch loss and metrics, and the version's graph (ONNX flavour)."""
    from .tracking import export_run

    with Client.from_settings() as client:
        out = export_run(client, mlflow, job=run, model=model)
    console.print(
        f"exported to MLflow run {out['run_id']} (experiment {out['experiment_id']}): "
        f"{out['params']} parameters, {out['metrics']} metric points"
        + (f"; model {out['model_uri']}" if out["model_uri"] else "")
    )
